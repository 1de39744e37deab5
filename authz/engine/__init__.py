"""The decision engine: compiled policy + directory -> decisions."""

from authz.engine.engine import DirectorySource, Engine, MemoryDirectory, PolicySet

__all__ = ["DirectorySource", "Engine", "MemoryDirectory", "PolicySet"]
