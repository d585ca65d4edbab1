"""The project's own error types: every user-facing failure is one of these."""

from __future__ import annotations

import difflib
from collections.abc import Sequence


class AerosslError(Exception):
    """Base class of every error aerossl raises on purpose."""


class ConfigError(AerosslError, ValueError):
    """A config file or override is invalid (names the field)."""


class DataError(AerosslError, ValueError):
    """A dataset, image or split file is invalid (names the file, and the line if there is one)."""


class CheckpointError(AerosslError):
    """A checkpoint or run folder cannot be read or written (names the path)."""


def suggest(word: str, choices: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` for the choice closest to ``word`` (case-insensitive), or
    ``""`` when none is close: the hint every "unknown name" error ends with."""
    lowered = {str(c).lower(): str(c) for c in choices}
    close = difflib.get_close_matches(str(word).lower(), list(lowered), n=1, cutoff=0.5)
    return f"; did you mean '{lowered[close[0]]}'?" if close else ""
