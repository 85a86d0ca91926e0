"""The package's version, at the bottom of the house so that every room can record it."""

__version__ = "0.1.0"
