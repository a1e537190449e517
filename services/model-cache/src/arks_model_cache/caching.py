"""The model cache: make a repository snapshot available once, for every caller.

`ModelCache.ensure(spec, access)` returns a `CachedModel` (the resolved commit, the
snapshot directory, its files and size). On the way:

1. **Single flight in this process**: concurrent calls for the same (repo, revision,
   patterns, endpoint, credential) share one flight; the first caller leads it, the
   others wait for its result and watch its progress. A different credential never
   shares a flight, so access is checked for every caller.
2. **Resolution** (`downloading.resolve_commit`): the revision becomes a commit.
3. **Single flight across processes**: the download lock of (repo, commit) in the
   cache root is held from here to the end, so a second process waits and then finds
   the files present (its Hub traffic is one revision lookup).
4. **Transfer** (`downloading.fetch_snapshot`) of what is missing; a download slot
   (at most `max_concurrent` transfers) is taken only once bytes must move, so cache
   hits never queue behind downloads; with a size limit, room is made first.
5. **Integrity**: files not yet verified are hashed against their ETag.
6. **Record and hold**: the entry record (verified files, last use) is updated and the
   caller's holds (leases, pins) are taken while the download lock is still held, so
   eviction cannot remove the snapshot between download and lease.

Transient failures are retried with exponential backoff (jittered); a full disk first
triggers an eviction. All blocking work runs on the cache's own thread pool; a
cancelled request stops its transfer at the next chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from arks_common.events import ModelCacheErrorKind
from arks_model_cache import downloading, evicting, preloading
from arks_model_cache.entries import EntryRecord, FileRecord, load_entry, save_entry
from arks_model_cache.failures import DownloadCancelled, DownloadFailure
from arks_model_cache.layout import CacheLayout
from arks_model_cache.leases import LeaseRecord, LeaseRegistry
from arks_model_cache.locking import exclusive
from arks_model_cache.settings import DownloadSettings
from arks_model_cache.specs import HubAccess, ModelSpec
from arks_model_cache.tracking import ProgressSnapshot, ProgressTracker
from arks_model_cache.verifying import SnapshotFile, verify

log = logging.getLogger(__name__)

T = TypeVar("T")
ProgressCallback = Callable[[ProgressSnapshot], Awaitable[None]]


@dataclass(frozen=True)
class Hold:
    """A lease the caller wants on the snapshot it gets (taken atomically with it)."""

    holder: str
    ttl_seconds: float | None = None
    pinned: bool = False


@dataclass(frozen=True)
class CachedModel:
    spec: ModelSpec
    commit: str
    path: Path
    files: tuple[SnapshotFile, ...]
    size_bytes: int
    fetched_bytes: int
    """Bytes this request transferred from the Hub (0: a cache hit)."""
    waited: bool
    """Another request or process was downloading it, and this one waited."""
    from_hub: bool
    """The Hub confirmed the commit (False: offline or Hub unreachable, served from cache)."""


@dataclass
class _Flight:
    tracker: ProgressTracker
    future: asyncio.Future[CachedModel]


class _Slots:
    """Transfer slots shared by download threads; waiting gives up on cancellation."""

    def __init__(self, count: int) -> None:
        self._semaphore = threading.BoundedSemaphore(count)

    @contextlib.contextmanager
    def lazy(self, cancel: threading.Event) -> Iterator[Callable[[], None]]:
        """Yields `acquire()`: take a slot the first time it is called; released on exit."""
        held = False

        def acquire() -> None:
            nonlocal held
            if held:
                return
            while not self._semaphore.acquire(timeout=0.05):
                if cancel.is_set():
                    raise DownloadCancelled("gave up waiting for a download slot")
            held = True

        try:
            yield acquire
        finally:
            if held:
                self._semaphore.release()


@dataclass
class ModelCache:
    """One cache root. Use as an async context manager (it owns a thread pool)."""

    layout: CacheLayout
    downloads: DownloadSettings = field(default_factory=DownloadSettings)
    size_limit: int | None = None
    threads: int = 16
    _flights: dict[tuple[object, ...], _Flight] = field(default_factory=dict, init=False)
    _busy: Counter[tuple[str, str]] = field(default_factory=Counter, init=False)
    _executor: ThreadPoolExecutor | None = field(default=None, init=False)
    _slots: _Slots = field(init=False)
    _evicting: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    def __post_init__(self) -> None:
        self._slots = _Slots(self.downloads.max_concurrent)
        self.leases = LeaseRegistry(self.layout.leases_dir)

    @classmethod
    def at(cls, root: Path, **kwargs: object) -> ModelCache:
        return cls(CacheLayout.at(root), **kwargs)  # type: ignore[arg-type]

    async def __aenter__(self) -> ModelCache:
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="model-cache")
        await self._run(self.layout.ensure)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for flight in self._flights.values():
            flight.tracker.cancel()
        executor, self._executor = self._executor, None
        if executor is not None:
            # Threads stop at their next chunk once cancelled; wait for them off the loop.
            await asyncio.to_thread(executor.shutdown, True)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self._executor is None:
            raise RuntimeError("ModelCache is not open (use `async with`)")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    # ------------------------------------------------------------------ ensure
    async def ensure(
        self,
        spec: ModelSpec,
        access: HubAccess,
        *,
        holds: Sequence[Hold] = (),
        on_progress: ProgressCallback | None = None,
        progress_interval: float = 1.0,
    ) -> CachedModel:
        """The snapshot `spec` names, downloaded at most once however many ask."""
        key: tuple[object, ...] = (spec, access.endpoint, access.token_fingerprint, access.offline)
        repo = (spec.repo_type, spec.repo_id)
        self._busy[repo] += 1
        try:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = _Flight(ProgressTracker(), asyncio.get_running_loop().create_future())
                self._flights[key] = flight
            failure: Exception | None = None
            async with asyncio.TaskGroup() as tg:
                reporter = None
                if on_progress is not None:
                    reporter = tg.create_task(
                        self._report(flight.tracker, on_progress, progress_interval),
                        name=f"progress {spec.describe()}",
                    )
                try:
                    if leader:
                        model = await self._lead(key, flight, spec, access, holds)
                    else:
                        model = await asyncio.shield(flight.future)
                        model = replace(model, waited=True, fetched_bytes=0)
                except Exception as exc:
                    # Raised after the group, so callers get it bare, not in a group.
                    failure = exc
                finally:
                    if reporter is not None:
                        reporter.cancel()
            if failure is not None:
                raise failure
            if not leader:
                await self._run(self._take_holds, model, holds)
            if on_progress is not None:
                await _safely(on_progress, flight.tracker.snapshot())
        finally:
            self._busy[repo] -= 1
            if self._busy[repo] <= 0:
                del self._busy[repo]
        if leader and model.fetched_bytes and self.size_limit is not None:
            await self.enforce_limit()
        return model

    async def _lead(
        self,
        key: tuple[object, ...],
        flight: _Flight,
        spec: ModelSpec,
        access: HubAccess,
        holds: Sequence[Hold],
    ) -> CachedModel:
        try:
            model = await self._with_retries(spec, access, flight.tracker, holds)
        except Exception as exc:
            flight.future.set_exception(exc)
            flight.future.exception()  # waiters may be none: mark it retrieved
            raise
        except BaseException:
            flight.tracker.cancel()
            flight.future.set_exception(
                DownloadFailure(
                    ModelCacheErrorKind.OTHER,
                    f"the request downloading {spec.describe()} was cancelled; try again",
                    retryable=True,
                )
            )
            flight.future.exception()
            raise
        else:
            flight.future.set_result(model)
            return model
        finally:
            self._flights.pop(key, None)

    async def _with_retries(
        self, spec: ModelSpec, access: HubAccess, tracker: ProgressTracker, holds: Sequence[Hold]
    ) -> CachedModel:
        attempts = self.downloads.attempts
        made_room = False
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._run(self._ensure_blocking, spec, access, tracker, holds)
            except DownloadCancelled as exc:
                raise DownloadFailure(
                    ModelCacheErrorKind.OTHER,
                    f"the download of {spec.describe()} was stopped (shutting down)",
                    retryable=True,
                ) from exc
            except DownloadFailure as failure:
                if failure.kind == ModelCacheErrorKind.DISK_FULL and not made_room:
                    made_room = True
                    needed = max(0, tracker.snapshot().bytes_total - tracker.snapshot().bytes_done)
                    report = await self.evict(free_bytes=needed or 1)
                    if report.evicted:
                        attempt -= 1  # the retry after freeing space is not a new attempt
                        continue
                if not failure.retryable or attempt >= attempts:
                    raise
                delay = min(
                    self.downloads.backoff_max,
                    self.downloads.backoff_initial * 2 ** (attempt - 1),
                ) * random.uniform(0.8, 1.2)
                log.warning(
                    "attempt %d/%d for %s failed (%s); retrying in %.1fs",
                    attempt,
                    attempts,
                    spec.describe(),
                    failure.message,
                    delay,
                )
                await asyncio.sleep(delay)

    def _ensure_blocking(
        self, spec: ModelSpec, access: HubAccess, tracker: ProgressTracker, holds: Sequence[Hold]
    ) -> CachedModel:
        layout = self.layout
        layout.ensure()
        resolution = downloading.resolve_commit(spec, access, layout)
        commit = resolution.commit
        offline = access.offline or downloading.offline_by_environment()
        lock = layout.download_lock(spec.repo_type, spec.repo_id, commit)
        with exclusive(lock, cancel=tracker.cancelled) as contended:
            tracker.check()
            with self._slots.lazy(tracker.cancelled) as take_slot:

                def before_transfer(missing_bytes: int) -> None:
                    take_slot()
                    if self.size_limit is not None:
                        self._make_room(max(0, self.size_limit - missing_bytes))

                path = downloading.fetch_snapshot(
                    spec,
                    commit,
                    access,
                    layout,
                    tracker,
                    local_only=offline or resolution.source == "cache",
                    before_transfer=before_transfer,
                )
            files = downloading.snapshot_files(spec, commit, layout)
            verified = self._verify(spec, commit, files, tracker)
            self._record(spec, commit, files, verified)
            model = CachedModel(
                spec=spec,
                commit=commit,
                path=path,
                files=tuple(files),
                size_bytes=sum(f.size for f in files),
                fetched_bytes=tracker.snapshot().bytes_fetched,
                waited=contended,
                from_hub=resolution.source == "hub",
            )
            self._take_holds(model, holds)
            tracker.finish(files=len(files), size=model.size_bytes)
            return model

    def _verify(
        self, spec: ModelSpec, commit: str, files: list[SnapshotFile], tracker: ProgressTracker
    ) -> dict[str, FileRecord]:
        """Hash the files not verified before (a cache hit hashes nothing)."""
        known = load_entry(self.layout.entry_file(spec.repo_type, spec.repo_id, commit))
        records: dict[str, FileRecord] = {}
        pending: list[SnapshotFile] = []
        for file in files:
            previous = known.files.get(file.path) if known else None
            if previous is not None and previous.etag == file.etag and previous.size == file.size:
                records[file.path] = previous
            else:
                pending.append(file)
        if pending:
            # hashlib releases the GIL on large buffers: two files hash in parallel.
            # Every file is checked (and a bad one discarded) before the first failure is
            # raised, so the retry re-fetches all bad files at once.
            with ThreadPoolExecutor(min(2, len(pending)), thread_name_prefix="verify") as pool:
                futures = [pool.submit(verify, f, tracker.cancelled) for f in pending]
            failures = [e for e in (f.exception() for f in futures) if e is not None]
            if failures:
                raise failures[0]
            for file, future in zip(pending, futures, strict=True):
                records[file.path] = FileRecord(
                    size=file.size, etag=file.etag, verified=future.result()
                )
        return records

    def _record(
        self,
        spec: ModelSpec,
        commit: str,
        files: list[SnapshotFile],
        verified: dict[str, FileRecord],
    ) -> None:
        path = self.layout.entry_file(spec.repo_type, spec.repo_id, commit)
        with exclusive(self.layout.cache_lock):
            entry = load_entry(path) or EntryRecord(
                repo_type=spec.repo_type, repo_id=spec.repo_id, commit=commit
            )
            entry.files.update(verified)
            if spec.revision not in entry.revisions:
                entry.revisions.append(spec.revision)
            entry.last_used_at = datetime.now(UTC)
            save_entry(path, entry)

    def _take_holds(self, model: CachedModel, holds: Sequence[Hold]) -> None:
        for hold in holds:
            self.leases.acquire(
                hold.holder,
                repo_type=model.spec.repo_type,
                repo_id=model.spec.repo_id,
                commit=model.commit,
                ttl_seconds=hold.ttl_seconds,
                pinned=hold.pinned,
            )

    def _is_busy(self, repo_type: str, repo_id: str) -> bool:
        return self._busy.get((repo_type, repo_id), 0) > 0

    def _make_room(self, target_bytes: int) -> None:
        evicting.evict(self.layout, self.leases, target_bytes=target_bytes, busy=self._is_busy)

    async def _report(
        self, tracker: ProgressTracker, on_progress: ProgressCallback, interval: float
    ) -> None:
        last: ProgressSnapshot | None = None
        while True:
            await asyncio.sleep(interval)
            current = tracker.snapshot()
            if current != last:
                last = current
                await _safely(on_progress, current)

    # ------------------------------------------------------------------ other operations
    async def preload(self, model: CachedModel) -> preloading.PreloadReport:
        return await self._run(preloading.preload, [f.blob for f in model.files], None)

    async def evict(
        self, *, target_bytes: int | None = None, free_bytes: int | None = None
    ) -> evicting.EvictionReport:
        async with self._evicting:
            return await self._run(
                functools.partial(
                    evicting.evict,
                    self.layout,
                    self.leases,
                    target_bytes=target_bytes,
                    free_bytes=free_bytes,
                    busy=self._is_busy,
                )
            )

    async def enforce_limit(self) -> evicting.EvictionReport | None:
        if self.size_limit is None:
            return None
        return await self.evict(target_bytes=self.size_limit)

    async def collect_garbage(self, max_age_seconds: float) -> int:
        return await self._run(
            functools.partial(
                evicting.collect_garbage, self.layout, self.leases, max_age_seconds=max_age_seconds
            )
        )

    async def inventory(self) -> evicting.Inventory:
        return await self._run(evicting.inventory, self.layout)

    async def lease(
        self,
        holder: str,
        *,
        repo_type: str,
        repo_id: str,
        commit: str | None,
        ttl_seconds: float | None = None,
        pinned: bool = False,
        pid: int | None = None,
    ) -> LeaseRecord:
        return await self._run(
            functools.partial(
                self.leases.acquire,
                holder,
                repo_type=repo_type,
                repo_id=repo_id,
                commit=commit,
                ttl_seconds=ttl_seconds,
                pinned=pinned,
                pid=pid,
            )
        )

    async def release(self, holder: str) -> bool:
        return await self._run(self.leases.release, holder)


async def _safely(callback: ProgressCallback, snapshot: ProgressSnapshot) -> None:
    """Progress is best effort: a failing reporter never fails the download."""
    try:
        await callback(snapshot)
    except Exception:
        log.warning("progress callback failed", exc_info=True)
