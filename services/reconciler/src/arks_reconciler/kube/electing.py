"""Leader election on a coordination.k8s.io/v1 Lease: the Kubernetes platform's `Leadership`.

One Lease (`LeaseSettings.name` in `lease_namespace(settings)`) names the reconciler that
acts. `LeaseElector.run(stop)` campaigns and, once leading, renews:

- a candidate reads the Lease every `retry_period`; it creates it when absent, takes it
  over when it is released (no holderIdentity) or expired (renewTime +
  leaseDurationSeconds is past by our clock, or the record has not changed for that long
  while we watched it), and otherwise logs who holds it. A takeover counts up
  leaseTransitions and sets acquireTime;
- leaseDurationSeconds is `duration` rounded up to whole seconds; the expiry of another
  holder's lease uses the leaseDurationSeconds it wrote;
- every write replaces the Lease at the resourceVersion read (or creates it), so two
  candidates never both win: the loser gets 409 and tries again later;
- the leader renews (renewTime) every `retry_period`. When it finds another holder it
  stops leading at once; when renewals keep failing (errors, timeouts) for
  `renew_deadline` it stops too — before the lease can expire for the others, as
  `renew_deadline < duration`. Stopping sets `lost` (the service exits 75) and clears
  `leading`, which is never set again in this process. A Lease deleted under the leader
  is created again (a standby that creates it first wins instead);
- on `stop` (SIGTERM) the leader releases the Lease (holderIdentity "",
  leaseDurationSeconds 1, renewTime now) so a standby takes over at once, as client-go's
  ReleaseOnCancel.

Times are MicroTime in UTC, `2026-12-05T12:00:00.000000Z`; others' times are read with or
without a fraction and an offset (a time without an offset is UTC). The Lease is read and
written as raw JSON (`arks_common.kubeapi`), so no typed model reformats them.

Errors never end the campaign: 401/403 are logged with the RBAC to grant (get, create and
update on leases in the Lease's namespace), timeouts, connection errors and other
answers are logged and tried again at the next attempt.

kubernetes-asyncio's own `leaderelection` is not used: it writes the local time labelled
as UTC (a naive `fromtimestamp` with "Z" appended) and drops the offset of the times it
reads, keeps no leaseTransitions, and cannot release the Lease on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from arks_common.errors import ArksError
from arks_common.kubeapi import KubeApi
from arks_common.store import AlreadyExistsError, ConflictError, NotFoundError
from arks_reconciler.settings import LeaseSettings

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Clock = Callable[[], datetime]

API_VERSION: Final = "coordination.k8s.io/v1"
SERVICE_ACCOUNT_NAMESPACE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
MICROTIME: Final = "%Y-%m-%dT%H:%M:%S.%fZ"


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_microtime(at: datetime) -> str:
    """`at` as a Kubernetes MicroTime: UTC, six fraction digits, `Z`."""
    return at.astimezone(UTC).strftime(MICROTIME)


def parse_time(value: object) -> datetime | None:
    """A Time or MicroTime written by anyone (fraction and offset optional; no offset:
    UTC); None when missing or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().upper())
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def lease_namespace(
    settings: LeaseSettings,
    *,
    environ: Mapping[str, str] = os.environ,
    service_account_file: Path = SERVICE_ACCOUNT_NAMESPACE,
) -> str:
    """The Lease's namespace: the setting, else the pod's (POD_NAMESPACE, else the
    service account's), else `default`."""
    if settings.namespace:
        return settings.namespace
    if environ.get("POD_NAMESPACE"):
        return environ["POD_NAMESPACE"]
    try:
        found = service_account_file.read_text().strip()
    except OSError:
        found = ""
    return found or "default"


def identity(settings: LeaseSettings) -> str:
    """The holder identity: the setting, else `<hostname>_<pid>` (unique per process, so
    a restarted reconciler campaigns anew)."""
    return settings.identity or f"{socket.gethostname()}_{os.getpid()}"


@dataclass(frozen=True)
class LeaseRecord:
    """What a Lease says, as read."""

    holder: str | None
    duration: float
    acquired: datetime | None
    renewed: datetime | None
    transitions: int
    resource_version: str
    raw: Obj

    @classmethod
    def of(cls, obj: Obj) -> LeaseRecord:
        spec = obj.get("spec") or {}
        try:
            duration = float(spec.get("leaseDurationSeconds") or 0)
        except (TypeError, ValueError):
            duration = 0.0
        try:
            transitions = int(spec.get("leaseTransitions") or 0)
        except (TypeError, ValueError):
            transitions = 0
        return cls(
            holder=spec.get("holderIdentity") or None,
            duration=duration,
            acquired=parse_time(spec.get("acquireTime")),
            renewed=parse_time(spec.get("renewTime")),
            transitions=transitions,
            resource_version=str((obj.get("metadata") or {}).get("resourceVersion") or ""),
            raw=obj,
        )

    def expired(self, now: datetime) -> bool:
        """renewTime + leaseDurationSeconds is past (a lease without them is expired)."""
        if self.renewed is None:
            return True
        return self.renewed + timedelta(seconds=self.duration) < now


class _NotFound(Exception):
    """404: there is no Lease yet."""


class _Conflict(Exception):
    """409: someone else wrote (or created) the Lease first."""


class _Failed(Exception):
    """A request failed in a way the campaign survives (logged by the caller)."""

    def __init__(self, message: str, *, level: int = logging.WARNING) -> None:
        super().__init__(message)
        self.level = level


class LeaseElector:
    """A `Leadership` on one Lease; see the module docstring."""

    def __init__(
        self,
        kube: KubeApi,
        settings: LeaseSettings,
        *,
        namespace: str,
        identity: str,
        clock: Clock = utcnow,
    ) -> None:
        self.leading = asyncio.Event()
        self.lost = asyncio.Event()
        self.settings = settings
        self.name = settings.name
        self.namespace = namespace
        self.identity = identity
        self._kube = kube
        self._clock = clock
        self._path = f"/apis/{API_VERSION}/namespaces/{namespace}/leases/{settings.name}"
        self._duration_seconds = max(1, math.ceil(settings.duration))
        self._record: LeaseRecord | None = None
        self._observed_at = 0.0
        """Monotonic time at which the record read last changed."""
        self._finished = False
        """Led and stopped leading (lost or released): never campaign again."""
        self._last_failure: str | None = None
        self._logged_holder: str | None = None

    # ------------------------------------------------------------------ metrics view
    @property
    def is_leader(self) -> bool:
        return self.leading.is_set() and not self.lost.is_set()

    @property
    def transitions(self) -> int:
        """leaseTransitions as last read or written."""
        return self._record.transitions if self._record is not None else 0

    @property
    def holder(self) -> str | None:
        """The holder as last read or written (None: nobody, or not read yet)."""
        return self._record.holder if self._record is not None else None

    # ------------------------------------------------------------------ campaign
    async def run(self, stop: asyncio.Event) -> None:
        """Campaign until leading, renew until `stop` (then release) or until the lead is
        lost; returns then."""
        loop = asyncio.get_running_loop()
        while not self._finished and not stop.is_set():
            started = loop.time()
            if await self._attempt(self._acquire):
                break
            await self._pause(stop, started + self.settings.retry_period)
        else:
            return
        log.info(
            "leading: %s holds Lease %s/%s (transitions %d)",
            self.identity,
            self.namespace,
            self.name,
            self.transitions,
        )
        self.leading.set()
        await self._renew_until_stopped(stop, renewed=started)
        if stop.is_set() and not self.lost.is_set():
            await self.release()

    async def _renew_until_stopped(self, stop: asyncio.Event, *, renewed: float) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set() and not self._finished:
            await self._pause(stop, loop.time() + self.settings.retry_period)
            if stop.is_set() or self._finished:
                return
            started = loop.time()
            left = renewed + self.settings.renew_deadline - started
            try:
                async with asyncio.timeout(max(left, 0.0)):
                    ok = await self._attempt(self._renew)
            except TimeoutError:
                ok = False
            if ok:
                renewed = started
            elif self._record is not None and self._record.holder != self.identity:
                self._lose(f"Lease {self.namespace}/{self.name} names {self.holder or 'nobody'}")
            elif loop.time() - renewed >= self.settings.renew_deadline:
                self._lose(f"no renewal succeeded for {self.settings.renew_deadline:g}s")

    def _lose(self, why: str) -> None:
        log.error("leadership lost (%s): another reconciler may act now", why)
        self._finished = True
        self.leading.clear()
        self.lost.set()

    async def release(self) -> None:
        """Give the lead up now (holderIdentity "", leaseDurationSeconds 1) so a standby
        takes over at once; nothing when not leading. Never campaigns again after."""
        if not self.leading.is_set() or self.lost.is_set():
            return
        self._finished = True
        self.leading.clear()
        try:
            async with asyncio.timeout(self.settings.retry_period):
                current = LeaseRecord.of(await self._request("GET"))
                if current.holder != self.identity:
                    log.info("not released: Lease %s/%s names another", self.namespace, self.name)
                    return
                now = format_microtime(self._clock())
                body = self._body(
                    current,
                    {
                        "holderIdentity": "",
                        "leaseDurationSeconds": 1,
                        "acquireTime": now,
                        "renewTime": now,
                        "leaseTransitions": current.transitions,
                    },
                )
                self._observe(LeaseRecord.of(await self._request("PUT", body)))
        except (_Conflict, _NotFound, _Failed, TimeoutError) as exc:
            log.warning(
                "could not release Lease %s/%s (%s): a standby takes over once it expires",
                self.namespace,
                self.name,
                str(exc) or type(exc).__name__,
            )
            return
        log.info("released Lease %s/%s", self.namespace, self.name)

    # ------------------------------------------------------------------ attempts
    async def _attempt(self, step: Callable[[], Any]) -> bool:
        """Run one acquire or renew step; failures are logged and give False."""
        try:
            done = bool(await step())
        except _Conflict:
            log.debug("Lease %s/%s changed under our write", self.namespace, self.name)
        except _NotFound:
            log.debug("Lease %s/%s is gone", self.namespace, self.name)
        except _Failed as exc:
            # once per kind of failure, not at every retry
            level = logging.DEBUG if str(exc) == self._last_failure else exc.level
            log.log(level, "Lease %s/%s: %s", self.namespace, self.name, exc)
            self._last_failure = str(exc)
        else:
            self._last_failure = None
            return done
        return False

    async def _acquire(self) -> bool:
        now = self._clock()
        try:
            current = LeaseRecord.of(await self._request("GET"))
        except _NotFound:
            await self._create(now, transitions=0)
            return True
        self._observe(current)
        if current.holder not in (None, self.identity) and not self._expired(current, now):
            if current.holder != self._logged_holder:
                log.info(
                    "standing by: %s holds Lease %s/%s",
                    current.holder,
                    self.namespace,
                    self.name,
                )
                self._logged_holder = current.holder
            return False
        if current.holder == self.identity:  # ours already (a fixed identity, restarted)
            spec = self._spec(now, transitions=current.transitions)
            spec["acquireTime"] = (
                current.raw.get("spec", {}).get("acquireTime") or spec["acquireTime"]
            )
        else:
            spec = self._spec(now, transitions=current.transitions + 1)
        self._observe(LeaseRecord.of(await self._request("PUT", self._body(current, spec))))
        return True

    async def _renew(self) -> bool:
        now = self._clock()
        try:
            current = LeaseRecord.of(await self._request("GET"))
        except _NotFound:  # deleted under us: create it again (409 if a standby did first)
            await self._create(now, transitions=self.transitions)
            return True
        self._observe(current)
        if current.holder != self.identity:
            return False
        spec = {
            **(current.raw.get("spec") or {}),
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self._duration_seconds,
            "renewTime": format_microtime(now),
        }
        self._observe(LeaseRecord.of(await self._request("PUT", self._body(current, spec))))
        return True

    async def _create(self, now: datetime, *, transitions: int) -> None:
        body = {
            "apiVersion": API_VERSION,
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": self._spec(now, transitions=transitions),
        }
        path = self._path.rpartition("/")[0]
        self._observe(LeaseRecord.of(await self._request("POST", body, path=path)))

    def _expired(self, record: LeaseRecord, now: datetime) -> bool:
        """Expired by the holder's renewTime and our clock, or unchanged for its duration
        while we watched (safe against clock skew)."""
        unchanged = asyncio.get_running_loop().time() - self._observed_at
        return record.expired(now) or unchanged > max(record.duration, 1.0)

    def _observe(self, record: LeaseRecord) -> None:
        if self._record is None or record.resource_version != self._record.resource_version:
            self._observed_at = asyncio.get_running_loop().time()
        self._record = record

    def _spec(self, now: datetime, *, transitions: int) -> Obj:
        at = format_microtime(now)
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self._duration_seconds,
            "acquireTime": at,
            "renewTime": at,
            "leaseTransitions": transitions,
        }

    def _body(self, current: LeaseRecord, spec: Obj) -> Obj:
        """The Lease to PUT: what was read, with `spec` and at its resourceVersion."""
        return {
            **current.raw,
            "apiVersion": API_VERSION,
            "kind": "Lease",
            "metadata": {
                **(current.raw.get("metadata") or {}),
                "resourceVersion": current.resource_version,
            },
            "spec": spec,
        }

    # ------------------------------------------------------------------ HTTP
    async def _request(self, method: str, body: Obj | None = None, *, path: str = "") -> Obj:
        """The Lease as the API answered; 404 → _NotFound, 409 → _Conflict, anything
        else that fails → _Failed (401/403 naming the RBAC to grant)."""
        try:
            return await self._kube.request(
                method,
                path or self._path,
                body=body,
                where=f"Lease {self.namespace}/{self.name}",
                seconds=self.settings.renew_deadline,
            )
        except NotFoundError as exc:
            raise _NotFound from exc
        except (ConflictError, AlreadyExistsError) as exc:
            raise _Conflict from exc
        except ArksError as exc:
            if exc.reason == "Forbidden":
                raise _Failed(
                    f"{exc.message}: grant the reconciler's service account get, create and "
                    f"update on leases (coordination.k8s.io) in namespace {self.namespace}; "
                    f"trying again every {self.settings.retry_period:g}s",
                    level=logging.ERROR,
                ) from exc
            raise _Failed(exc.message) from exc

    async def _pause(self, stop: asyncio.Event, until: float) -> None:
        delay = until - asyncio.get_running_loop().time()
        if delay > 0 and not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()
