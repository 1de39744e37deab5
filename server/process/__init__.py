"""The server process: start and stop, workers, configuration, logs, metrics,
health, policy reload."""
