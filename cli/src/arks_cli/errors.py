"""User-facing failures of the `arks` command.

A `CliError` is something the user can act on: `__main__` prints its message as one
line (`error: ...`) and exits with its code, never with a traceback. Anything else
escaping a command is a bug and keeps its traceback.
"""

from __future__ import annotations


class CliError(Exception):
    """A failure explained to the user in one line (or a few, for lists of problems)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class NotRunningError(CliError):
    """The local stack (NATS, Valkey, router) is not reachable."""
