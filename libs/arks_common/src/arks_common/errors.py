"""Errors that say whether to retry.

    ArksError
    ├── RetryableError(delay)   transient: try again later (NATS nak with delay,
    │                           reconciler requeue-after, HTTP 503/429 with Retry-After)
    └── PermanentError          retrying cannot help (JetStream term + dead letter,
                                a Failed condition naming what to fix, HTTP 4xx)

Catch specific exceptions and convert them into one of these at the boundary where
the meaning is known; `except Exception` belongs only at a task or request boundary.
"""

from __future__ import annotations


class ArksError(Exception):
    """Base of every error Arks raises on purpose."""

    retryable: bool = False

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or type(self).__name__


class RetryableError(ArksError):
    """Transient: the same operation may succeed after `delay` seconds."""

    retryable = True

    def __init__(self, message: str, *, delay: float = 1.0, reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.delay = delay


class PermanentError(ArksError):
    """Retrying the same input cannot succeed; the input or configuration must change."""


def is_retryable(exc: BaseException) -> bool:
    """Whether an exception, ours or not, is worth retrying (unknown ones are not)."""
    return isinstance(exc, ArksError) and exc.retryable
