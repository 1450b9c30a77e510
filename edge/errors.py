"""The one exception type for problems a user can fix (bad config, model, engine, stream).

The CLI prints it as one line, ``error: <what> (<fix>)``, and exits with its code; it never
shows a traceback for it. Faults in our own code are not EdgeErrors and do show one.
"""

from __future__ import annotations

from typing import Optional

# Exit codes (documented in docs/configuration.md and the README).
EXIT_OK = 0
EXIT_FAILURE = 1  # an internal fault (a bug): a traceback is logged
EXIT_USAGE = 2  # command line misuse
EXIT_CONFIG = 3  # invalid configuration file
EXIT_MODEL = 4  # model or engine cannot be used
EXIT_SOURCE = 5  # a source that cannot work as configured (file missing, bad pipeline)
EXIT_HARDWARE = 6  # hardware or library missing for what was asked (no GPU, no INT8, no DLA)


class EdgeError(Exception):
    """A problem the user can fix: a message naming it and a hint saying how."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, hint: Optional[str] = None, exit_code: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(EdgeError):
    exit_code = EXIT_CONFIG


class ModelError(EdgeError):
    exit_code = EXIT_MODEL


class SourceError(EdgeError):
    exit_code = EXIT_SOURCE


class HardwareError(EdgeError):
    exit_code = EXIT_HARDWARE
