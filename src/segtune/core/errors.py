"""User-facing errors: each one prints as a single line naming the file or key."""

from __future__ import annotations


class SegtuneError(Exception):
    """An error caused by the user's input; the CLI prints it as one line and exits 2."""


class DataError(SegtuneError):
    """A picture, mask, folder or manifest is missing or unusable."""


class ConfigError(SegtuneError):
    """A config or spec key is unknown, missing or out of range."""
