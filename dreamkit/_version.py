"""dreamkit's version, in a module of its own so that every module can read it without importing
the package (whose ``__init__`` imports them: that would be an import cycle)."""

__version__ = "0.1.0"
