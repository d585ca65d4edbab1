"""The package version (a leaf module, so that anything may record it)."""

__version__ = "0.1.0"
