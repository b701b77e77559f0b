"""User-facing errors: one clear line naming the file or field and what is wrong."""

from __future__ import annotations


class ForesightError(Exception):
    """An error the CLI prints as one line (no traceback) before exiting with status 2."""


class ConfigError(ForesightError):
    """The configuration is invalid: names the key, the file and the problem."""


class InputError(ForesightError):
    """An input file (video, CSV, manifest, checkpoint) is unreadable or inconsistent."""
