"""Progress of one download, fed by huggingface_hub's progress bars from its threads.

`snapshot_download(tqdm_class=...)` creates three bars with the class it is given: the
bytes written ("Reconstructing ..."), the bytes received ("Downloading bytes") and the
files finished ("Fetching N files"). `bar_class(tracker)` returns a stand-in for tqdm
that draws nothing and forwards the written bytes and finished files to a
`ProgressTracker`; the first bar's creation also calls the downloader's listing
callback, which fills in the totals from the tree listing huggingface_hub has just
cached (once per attempt, see `expect_listing`). The tracker is thread-safe; readers
take `snapshot()`s at their own pace, which is how progress events stay at a bounded
rate.

Cancellation travels the other way: `tracker.cancel()` makes the next bar update (at
most one 10 MiB chunk later) raise `DownloadCancelled` inside the download thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from arks_model_cache.failures import DownloadCancelled

RATE_WINDOW_SECONDS = 5.0


@dataclass(frozen=True)
class ProgressSnapshot:
    bytes_done: int = 0
    bytes_total: int = 0
    files_done: int = 0
    files_total: int = 0
    rate_bytes_per_s: float = 0.0
    bytes_fetched: int = 0
    """Bytes transferred from the Hub by this download (0 for a cache hit)."""


class ProgressTracker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes_done = 0
        self._bytes_total = 0
        self._files_done = 0
        self._files_total = 0
        self._fetched = 0
        self._samples: deque[tuple[float, int]] = deque()
        self.cancelled = threading.Event()
        self._on_listing: Callable[[], None] | None = None
        self._listed = False

    # ------------------------------------------------------------------ writers
    def begin(
        self, *, files_total: int, bytes_total: int, files_cached: int, bytes_cached: int
    ) -> None:
        """Totals of the requested files; the cached ones count as done already."""
        with self._lock:
            self._files_total = files_total
            self._bytes_total = bytes_total
            self._files_done = files_cached
            self._bytes_done = bytes_cached
            self._samples.clear()

    def expect_listing(self, callback: Callable[[], None]) -> None:
        """Call `callback` (in the download thread) once the next attempt has listed the files."""
        with self._lock:
            self._on_listing = callback
            self._listed = False

    def listed(self) -> None:
        with self._lock:
            if self._listed:
                return
            self._listed = True
            callback = self._on_listing
        if callback is not None:
            callback()

    def add_bytes(self, n: int) -> None:
        self.check()
        now = time.monotonic()
        with self._lock:
            self._bytes_done = max(0, self._bytes_done + n)
            self._fetched = max(0, self._fetched + n)
            self._bytes_total = max(self._bytes_total, self._bytes_done)
            self._samples.append((now, self._fetched))
            while self._samples and now - self._samples[0][0] > RATE_WINDOW_SECONDS:
                self._samples.popleft()

    def add_files(self, n: int) -> None:
        self.check()
        with self._lock:
            self._files_done += n
            self._files_total = max(self._files_total, self._files_done)

    def finish(self, *, files: int, size: int) -> None:
        """Everything requested is present: done equals total."""
        with self._lock:
            self._files_total = self._files_done = files
            self._bytes_total = self._bytes_done = size

    # ------------------------------------------------------------------ cancellation
    def cancel(self) -> None:
        self.cancelled.set()

    def check(self) -> None:
        if self.cancelled.is_set():
            raise DownloadCancelled("download cancelled")

    # ------------------------------------------------------------------ readers
    def snapshot(self) -> ProgressSnapshot:
        now = time.monotonic()
        with self._lock:
            rate = 0.0
            if self._samples:
                first_t, first_b = self._samples[0]
                last_t, last_b = self._samples[-1]
                span = max(now, last_t) - first_t
                if now - last_t <= RATE_WINDOW_SECONDS and span > 0:
                    rate = (last_b - first_b) / span
            return ProgressSnapshot(
                bytes_done=self._bytes_done,
                bytes_total=self._bytes_total,
                files_done=self._files_done,
                files_total=self._files_total,
                rate_bytes_per_s=round(rate, 1),
                bytes_fetched=self._fetched,
            )


class _SilentBar:
    """The parts of tqdm's interface huggingface_hub uses; draws nothing.

    The tracker is a class attribute because huggingface_hub instantiates the class
    itself; `bar_class()` makes one subclass per download.
    """

    tracker: ProgressTracker

    def __init__(self, *_: Any, **kwargs: Any) -> None:
        self.desc = str(kwargs.get("desc") or "")
        self.unit = str(kwargs.get("unit") or "it")
        self.total: float | None = kwargs.get("total")
        self.n: float = kwargs.get("initial") or 0
        # Only the written-bytes bar and the files bar feed the tracker: the transfer bar
        # repeats the written bytes on plain HTTP and counts compressed bytes on Xet.
        if self.unit == "B":
            self._role = "transfer" if self.desc.startswith("Downloading") else "bytes"
        else:
            self._role = "files"
        self.tracker.listed()

    def update(self, n: float | None = 1) -> bool | None:
        step = n or 0
        self.n += step
        if self._role == "bytes":
            self.tracker.add_bytes(int(step))
        elif self._role == "files":
            self.tracker.add_files(int(step))
        else:
            self.tracker.check()
        return None

    def __enter__(self) -> _SilentBar:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def close(self) -> None:
        return None

    def refresh(self, *_: Any, **__: Any) -> None:
        return None

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def set_description_str(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        return None

    @property
    def format_dict(self) -> dict[str, Any]:
        return {"n": self.n, "total": self.total, "rate": None}


def bar_class(tracker: ProgressTracker) -> type[_SilentBar]:
    """A tqdm stand-in bound to `tracker`, for `snapshot_download(tqdm_class=...)`."""
    return type("TrackedBar", (_SilentBar,), {"tracker": tracker})
