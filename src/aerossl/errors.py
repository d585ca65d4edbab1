"""The project's own error types: every user-facing failure is one of these."""

from __future__ import annotations


class AerosslError(Exception):
    """Base class of every error aerossl raises on purpose."""


class ConfigError(AerosslError, ValueError):
    """A config file or override is invalid (names the field)."""


class DataError(AerosslError, ValueError):
    """A dataset, image or split file is invalid (names the file, and the line if there is one)."""


class CheckpointError(AerosslError):
    """A checkpoint or run folder cannot be read or written (names the path)."""
