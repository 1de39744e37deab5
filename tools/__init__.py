"""Build tools, not installed: stub generation, vendoring the Envoy stubs."""
