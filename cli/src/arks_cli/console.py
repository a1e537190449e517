"""What `arks up` tells the person at the terminal: short, timestamped lines."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TextIO


class Console:
    """Progress on stdout, problems on stderr; each line stamped with the local time."""

    def __init__(self, stream: TextIO | None = None, errors: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.errors = errors or sys.stderr

    @staticmethod
    def _stamp() -> str:
        return datetime.now().strftime("%H:%M:%S")

    def info(self, text: str) -> None:
        self.stream.write(f"{self._stamp()} {text}\n")
        self.stream.flush()

    def warn(self, text: str) -> None:
        self.errors.write(f"{self._stamp()} warning: {text}\n")
        self.errors.flush()

    def raw(self, text: str) -> None:
        """Unstamped text (the curl line, so it can be copied as is)."""
        self.stream.write(text if text.endswith("\n") else text + "\n")
        self.stream.flush()
