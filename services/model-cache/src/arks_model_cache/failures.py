"""The typed failure of a cache request: what went wrong, in words an operator can act on,
and whether trying again later can help.

`DownloadFailure.kind` is the `ModelCacheErrorKind` of the result event; `retryable`
says whether the failure is transient (network, hub overload, disk full until space is
freed). The service retries only retryable failures, with backoff; the rest are final
until the request changes (a token, a revision, a repo name).
"""

from __future__ import annotations

from arks_common.errors import ArksError
from arks_common.events import ModelCacheErrorKind


class DownloadFailure(ArksError):
    def __init__(
        self, kind: ModelCacheErrorKind, message: str, *, retryable: bool, delay: float = 0.0
    ) -> None:
        super().__init__(message, reason=kind.value)
        self.kind = kind
        self.retryable = retryable
        self.delay = delay


class DownloadCancelled(Exception):
    """Raised inside download threads when the request was abandoned (shutdown)."""
