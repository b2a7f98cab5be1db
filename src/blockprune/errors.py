"""User-facing errors: each says what is wrong, where, and how to fix it."""

from __future__ import annotations


class BlockpruneError(Exception):
    """An error caused by the user's input or config, not by a bug.

    The entry point prints these without a traceback and exits non-zero.
    """


class DataError(BlockpruneError):
    """Bad data file: the message names the file, the row where it applies, and the fix."""


class ConfigError(BlockpruneError):
    """Bad config value: the message names the key and the allowed values."""
