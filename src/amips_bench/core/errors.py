"""The package's one error for bad input: a missing file, a wrong key or value. The CLI prints
its message as one line (no traceback) and exits with status 2."""

from __future__ import annotations


class InputError(ValueError):
    """A bad input file, array or config value; the message names the culprit in one line."""


class ConfigError(InputError):
    """A configuration mistake; the message is one line that names the key."""
