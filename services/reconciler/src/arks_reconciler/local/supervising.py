"""Supervising replica processes: start, health-check, restart with backoff, stop, adopt.

Each replica moves through `ReplicaState`:

    Starting ──/health 200──► Ready ──failureThreshold failures──► Unready ──200──► Ready
       │                        │                                     │
       │ exit / not ready       │ exit                                │ exit / 3x threshold failures
       ▼ within startupTimeout  ▼                                     ▼
    BackOff ──(delay 1 s, 2 s, 4 s … max; reset after a while ready)──► Starting
    (any) ──scale down / delete / rollout──► Stopping ──SIGTERM, grace, SIGKILL──► gone

A tick runs every `health_interval` seconds (and at once when a stop is requested): it
notices exits (the child's return code, or /proc for adopted processes), checks /health of
every live replica concurrently, restarts replicas whose backoff has passed, starts stops
and retries registry writes that failed. Every state change calls `notify(owner)` so the
core reconciles the owning application (status, routes) at once.

Probes: when the role's `instanceSpec` gives readiness/liveness/startup probes they
replace the `/health` poll (see `probing`). GPUs: a replica whose role asks for
`nvidia.com/gpu` is given that many GPUs of the pool (`gpus`) before its process
starts, as `CUDA_VISIBLE_DEVICES`; when not enough are free it waits in BackOff with a
message saying so ("waiting for GPUs: needs 2 GPUs, 1 free (3) ...") and tries again
every tick; it keeps them across restarts (and reconciler restarts: they are recorded)
and gives them back when it stops.

A replica keeps its name and, when still free, its port across restarts. After a
reconciler restart `adopt()` takes over every recorded process that is still the same
process (pid, start time, boot id, markers) and kills marked processes nobody recorded
(started just before a crash), so there are neither orphans nor duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import httpx

from arks_common.errors import RetryableError
from arks_common.store import ObjectRef
from arks_reconciler.local import probing, processes
from arks_reconciler.local.engines import Engines
from arks_reconciler.local.gpus import GpuPool, Shortage, discover_with_nvidia_smi
from arks_reconciler.local.instance import LocalSpec, Probe, resolve_field
from arks_reconciler.local.ports import PortAllocator
from arks_reconciler.local.registry import ReplicaRecord, ReplicaRegistry
from arks_reconciler.local.rollout import ReplicaView, plan_rollout
from arks_reconciler.plans import INFERENCE_ROLE, ReplicaTemplate, RolePlan, WorkloadPlan
from arks_reconciler.platform import (
    Backend,
    Notify,
    Problem,
    ReplicaObservation,
    ReplicaState,
    WorkloadObservation,
)
from arks_reconciler.settings import LocalSettings

log = logging.getLogger(__name__)

LIVE = (ReplicaState.STARTING, ReplicaState.READY, ReplicaState.UNREADY)


@dataclass(eq=False)
class Replica:
    name: str
    owner: ObjectRef
    owner_uid: str
    role: str
    runtime: str
    template_hash: str
    port: int
    log_path: Path
    created: float
    backoff: float
    template: ReplicaTemplate | None = None
    local: LocalSpec | None = None
    """The role's local settings (GPUs, env from fields, probes); None until claimed."""
    gpus: tuple[str, ...] = ()
    shared_gpus: bool = False
    waiting_for_gpus: bool = False
    env: dict[str, str] | None = None
    """The environment its process was started with (exec probes run with it)."""
    started_ok: bool = False
    """Its startup probe succeeded (or it has none)."""
    probes: dict[str, probing.ProbeState] = field(default_factory=dict)
    prefix: list[str] = field(default_factory=list)
    state: ReplicaState = ReplicaState.STARTING
    process: asyncio.subprocess.Process | None = None
    identity: processes.ProcessIdentity | None = None
    argv: list[str] = field(default_factory=list)
    started: float = 0.0
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    ready_since: float | None = None
    failures: int = 0
    restarts: int = 0
    restart_at: float = 0.0
    message: str = "starting"
    updated: bool = True
    dirty: bool = False
    killing: bool = False
    stop_started: bool = False
    gone: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, host: str) -> str:
        return f"http://{host}:{self.port}"

    def record(self, host: str) -> ReplicaRecord | None:
        if self.identity is None:
            return None
        return ReplicaRecord(
            name=self.name,
            namespace=self.owner.namespace,
            kind=self.owner.kind,
            owner=self.owner.name,
            owner_uid=self.owner_uid,
            role=self.role,
            runtime=self.runtime,
            template_hash=self.template_hash,
            pid=self.identity.pid,
            start_ticks=self.identity.start_ticks,
            boot_id=self.identity.boot_id,
            port=self.port,
            url=self.url(host),
            argv=self.argv,
            log_path=str(self.log_path),
            started_at=self.started_at,
            restarts=self.restarts,
            gpus=list(self.gpus),
            shared_gpus=self.shared_gpus,
        )


def _open_log(path: Path, argv: Sequence[str]) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("ab")
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    handle.write(f"--- {stamp} arks-reconciler starts: {' '.join(argv)}\n".encode())
    handle.flush()
    return handle


class Supervisor:
    def __init__(
        self,
        settings: LocalSettings,
        registry: ReplicaRegistry,
        engines: Engines,
        client: httpx.AsyncClient,
        discover_gpus: Callable[[], list[str]] = discover_with_nvidia_smi,
    ) -> None:
        self.settings = settings
        self.gpus = GpuPool(settings.gpus, discover_gpus)
        self.node = socket.gethostname()
        self.registry = registry
        self.engines = engines
        self.client = client
        self.scope = processes.scope_of(settings.data_dir)
        self.ports = PortAllocator(settings.host, settings.port_min, settings.port_max)
        self.replicas: dict[str, Replica] = {}
        self._locks: defaultdict[ObjectRef, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._notify: Notify = lambda ref: None
        self._tg: asyncio.TaskGroup | None = None
        self._wake = asyncio.Event()
        self._order = 0.0

    # ------------------------------------------------------------------ adoption
    async def adopt(self) -> list[str]:
        """Take over the replicas a previous reconciler left running; returns their names."""
        records = await self.registry.load()
        adopted: list[str] = []
        adopted_pids: set[int] = set()
        boot = await asyncio.to_thread(processes.boot_id)
        for record in records:
            same = record.boot_id == boot and await asyncio.to_thread(
                processes.is_replica, record.identity, record.name, self.scope
            )
            if not same:
                log.info("replica %s (pid %d) is gone; forgetting it", record.name, record.pid)
                with contextlib.suppress(RetryableError):
                    await self.registry.delete(record)
                continue
            replica = self._replica_from(record)
            self.replicas[replica.name] = replica
            self.ports.reserve(record.port)
            self.gpus.reserve(record.name, record.gpus, shared=record.shared_gpus)
            adopted.append(record.name)
            adopted_pids.add(record.pid)
            log.info("adopted replica %s (pid %d, port %d)", record.name, record.pid, record.port)
        marked = await asyncio.to_thread(processes.find_marked, self.scope)
        for pid, name in sorted(marked.items()):
            if pid in adopted_pids:
                continue
            identity = await asyncio.to_thread(processes.identify, pid)
            if identity is not None:
                log.warning("stopping unrecorded replica process %s (pid %d)", name, pid)
                await processes.terminate(identity, self.settings.stop_grace)
        return adopted

    def _replica_from(self, record: ReplicaRecord) -> Replica:
        self._order += 1
        return Replica(
            name=record.name,
            owner=record.owner_ref,
            owner_uid=record.owner_uid,
            role=record.role,
            runtime=record.runtime,
            template_hash=record.template_hash,
            port=record.port,
            log_path=Path(record.log_path),
            created=self._order,
            backoff=self.settings.restart_backoff_initial,
            identity=record.identity,
            argv=list(record.argv),
            started=time.monotonic(),
            started_at=record.started_at,
            restarts=record.restarts,
            gpus=tuple(record.gpus),
            shared_gpus=record.shared_gpus,
            message="adopted; waiting for /health",
        )

    # ------------------------------------------------------------------ queries
    def members(self, ref: ObjectRef, role: str | None = None) -> list[Replica]:
        return [
            r for r in self.replicas.values() if r.owner == ref and (role is None or r.role == role)
        ]

    def owners(self) -> set[ObjectRef]:
        return {r.owner for r in self.replicas.values()}

    def observe(
        self, ref: ObjectRef, *, entry_role: str = INFERENCE_ROLE, problem: Problem | None = None
    ) -> WorkloadObservation | None:
        members = sorted(self.members(ref), key=lambda r: r.created)
        if not members and problem is None:
            return None
        return WorkloadObservation(
            replicas=tuple(
                ReplicaObservation(
                    name=r.name,
                    role=r.role,
                    state=r.state,
                    url=r.url(self.settings.host),
                    updated=r.updated,
                    restarts=r.restarts,
                    message="" if r.state is ReplicaState.READY else r.message,
                )
                for r in members
            ),
            entry_role=entry_role,
            problem=problem,
        )

    def backends(self, ref: ObjectRef, role: str) -> list[Backend]:
        members = sorted(self.members(ref, role), key=lambda r: r.created)
        return [
            Backend(replica=r.name, url=r.url(self.settings.host))
            for r in members
            if r.state is ReplicaState.READY
        ]

    # ------------------------------------------------------------------ desired state
    async def ensure(
        self,
        plan: WorkloadPlan,
        roles: Sequence[RolePlan],
        prefixes: dict[str, list[str]],
        specs: Mapping[str, LocalSpec] | None = None,
    ) -> None:
        """Start and stop replicas so each role converges towards the plan (one step)."""
        async with self._locks[plan.ref]:
            wanted_roles = {role.role for role in roles}
            for role in roles:
                spec = (specs or {}).get(role.role, LocalSpec())
                wanted_hash = spec.fingerprint(role.template.hash)
                members = [
                    r
                    for r in self.members(plan.ref, role.role)
                    if r.state is not ReplicaState.STOPPING
                ]
                for r in members:
                    r.updated = r.template_hash == wanted_hash and r.owner_uid == plan.uid
                    if r.updated:
                        r.template = role.template
                        r.local = spec
                        r.prefix = prefixes[role.role]
                views = [
                    ReplicaView(r.name, r.updated, r.state is ReplicaState.READY, r.created)
                    for r in members
                ]
                step = plan_rollout(role.replicas, views)
                for name in step.stop:
                    self._begin_stop(self.replicas[name])
                for _ in range(step.start):
                    await self._create(plan, role, prefixes[role.role], spec, wanted_hash)
            for r in self.members(plan.ref):
                if r.role not in wanted_roles:
                    self._begin_stop(r)

    async def remove(self, ref: ObjectRef) -> None:
        """Stop every replica of `ref` and wait until they are gone."""
        async with self._locks[ref]:
            members = self.members(ref)
            if members:
                await asyncio.gather(*(self._stop(r) for r in members))

    def _new_name(self, owner: str, role: str) -> str:
        stem = owner if role == INFERENCE_ROLE else f"{owner}-{role}"
        while True:
            name = f"{stem}-{secrets.token_hex(3)[:5]}"
            if name not in self.replicas:
                return name

    async def _create(
        self,
        plan: WorkloadPlan,
        role: RolePlan,
        prefix: list[str],
        spec: LocalSpec | None = None,
        template_hash: str | None = None,
    ) -> None:
        self._order += 1
        name = self._new_name(plan.ref.name, role.role)
        replica = Replica(
            name=name,
            owner=plan.ref,
            owner_uid=plan.uid,
            role=role.role,
            runtime=role.template.runtime,
            template_hash=template_hash or role.template.hash,
            port=0,
            log_path=self.settings.logs.absolute() / f"{plan.ref.namespace}.{name}.log",
            created=self._order,
            backoff=self.settings.restart_backoff_initial,
            template=role.template,
            local=spec,
            prefix=prefix,
        )
        self.replicas[name] = replica
        log.info("starting replica %s of %s %s/%s", name, *_ref_parts(plan.ref))
        await self._spawn(replica)

    def _assign_gpus(self, r: Replica) -> bool:
        """Give the replica its GPUs; False (and BackOff saying why) when too few are free."""
        spec = r.local or LocalSpec()
        got = self.gpus.allocate(r.name, spec.gpus, shared=spec.share_gpus)
        if isinstance(got, Shortage):
            r.waiting_for_gpus = True
            r.state = ReplicaState.BACKOFF
            r.ready_since = None
            r.restart_at = time.monotonic() + self.settings.health_interval
            if r.message != got.message:
                r.message = got.message
                log.warning("replica %s is %s", r.name, got.message)
                self._notify(r.owner)
            return False
        r.waiting_for_gpus = False
        r.gpus, r.shared_gpus = got, spec.share_gpus
        return True

    def _env(self, r: Replica) -> dict[str, str]:
        assert r.template is not None
        env = self.engines.env(r.template, name=r.name, scope=self.scope)
        spec = r.local or LocalSpec()
        for variable, path in spec.field_env:
            env[variable] = resolve_field(
                path,
                replica=r.name,
                namespace=r.owner.namespace,
                host=self.settings.host,
                node=self.node,
            )
        if spec.gpus > 0:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(r.gpus)
        return env

    async def _spawn(self, r: Replica) -> None:
        assert r.template is not None
        if not self._assign_gpus(r):
            return
        self.ports.release(r.port)
        r.port = self.ports.allocate(prefer=r.port or None)
        r.argv = self.engines.argv(r.prefix, r.template, r.port)
        env = self._env(r)
        r.env = env
        r.started = time.monotonic()
        r.started_at = datetime.now(UTC)
        r.failures = 0
        r.ready_since = None
        r.started_ok = False
        r.probes = {}
        try:
            handle = await asyncio.to_thread(_open_log, r.log_path, r.argv)
            try:
                proc = await asyncio.create_subprocess_exec(
                    *r.argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=handle,
                    stderr=asyncio.subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            finally:
                handle.close()
        except OSError as exc:
            r.process, r.identity = None, None
            self._back_off(r, f"could not start {r.argv[0]}: {exc}")
            return
        r.process = proc
        identity = await asyncio.to_thread(processes.identify, proc.pid)
        r.identity = identity or processes.ProcessIdentity(proc.pid, -1, "")
        r.state = ReplicaState.STARTING
        r.message = "starting: waiting for /health"
        await self._record(r)
        self._notify(r.owner)

    async def _record(self, r: Replica) -> None:
        record = r.record(self.settings.host)
        if record is None:
            return
        try:
            await self.registry.put(record)
            r.dirty = False
        except RetryableError as exc:
            log.warning("could not record replica %s yet: %s", r.name, exc.message)
            r.dirty = True

    # ------------------------------------------------------------------ stopping
    def _begin_stop(self, r: Replica) -> None:
        if r.state is ReplicaState.STOPPING:
            return
        r.state = ReplicaState.STOPPING
        r.message = "stopping"
        self._wake.set()
        self._notify(r.owner)

    async def _stop(self, r: Replica) -> None:
        if r.stop_started:
            await r.gone.wait()
            return
        r.stop_started = True
        r.state = ReplicaState.STOPPING
        log.info("stopping replica %s", r.name)
        try:
            if r.identity is not None and r.identity.start_ticks >= 0:
                await processes.terminate(r.identity, self.settings.stop_grace)
            elif r.process is not None and r.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    r.process.kill()
            if r.process is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(r.process.wait(), 5.0)
            record = r.record(self.settings.host)
            if record is not None:
                try:
                    await self.registry.delete(record)
                except RetryableError as exc:
                    # A stale record is recognised as such at the next adoption.
                    log.warning("could not delete the record of %s: %s", r.name, exc.message)
        finally:
            self.ports.release(r.port)
            if self.replicas.get(r.name) is r:
                self.gpus.release(r.name)
                del self.replicas[r.name]
            r.gone.set()
            self._notify(r.owner)

    async def stop_all(self) -> None:
        if self.replicas:
            await asyncio.gather(*(self._stop(r) for r in list(self.replicas.values())))

    # ------------------------------------------------------------------ supervision
    async def run(self, notify: Notify, stop: asyncio.Event) -> None:
        self._notify = notify
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                while not stop.is_set():
                    try:
                        await self.tick()
                    except Exception:
                        log.exception("replica supervision tick failed")
                    self._wake.clear()
                    waiters = [
                        asyncio.ensure_future(self._wake.wait()),
                        asyncio.ensure_future(stop.wait()),
                    ]
                    try:
                        await asyncio.wait(
                            waiters,
                            timeout=self.settings.health_interval,
                            return_when=asyncio.FIRST_COMPLETED,
                        )
                    finally:
                        for waiter in waiters:
                            waiter.cancel()
                self._tg = None
                if self.settings.stop_on_exit:
                    await self.stop_all()
        finally:
            self._tg = None

    def _spawn_task(self, coro: object, name: str) -> None:
        assert self._tg is not None
        self._tg.create_task(coro, name=name)  # type: ignore[arg-type]

    async def tick(self) -> None:
        now = time.monotonic()
        for r in list(self.replicas.values()):
            if r.state is ReplicaState.STOPPING and not r.stop_started and self._tg is not None:
                self._spawn_task(self._stop(r), f"stop:{r.name}")
        # A replica being created has neither process nor identity until its spawn
        # returns; judging it now would call it dead and start a second one on its port.
        live = [
            r
            for r in self.replicas.values()
            if r.state in LIVE and not r.killing and (r.process or r.identity) is not None
        ]
        exits = await asyncio.to_thread(_exits, live)
        for r, code in exits:
            await self._exited(r, code)
        exited = {id(r) for r, _ in exits}
        checked = [r for r in live if id(r) not in exited]
        await asyncio.gather(*(self._check(r, now) for r in checked))
        for r in list(self.replicas.values()):
            if r.state is ReplicaState.BACKOFF and not r.killing and r.restart_at <= now:
                if self._locks[r.owner].locked():
                    continue  # the owner is being changed or removed: next tick
                await self._restart(r)
            elif r.dirty and r.state is not ReplicaState.STOPPING:
                await self._record(r)

    async def _check(self, r: Replica, now: float) -> None:
        spec = r.local
        if spec is None or (spec.readiness, spec.liveness, spec.startup) == (None, None, None):
            ok = await self._healthy(r)
            if r.state in LIVE:
                self._health(r, ok, now)
            return
        await self._probe(r, spec, now)

    async def _run_probe(self, r: Replica, key: str, probe: Probe, now: float) -> bool | None:
        """Run a probe when due; None when it is not due or the replica changed meanwhile."""
        state = r.probes.setdefault(key, probing.ProbeState())
        if not state.due(probe, now, r.started):
            return None
        state.last_run = now
        ok = await probing.run(
            probe, host=self.settings.host, port=r.port, client=self.client, env=r.env
        )
        if r.state not in LIVE or r.killing:
            return None
        state.count(ok)
        return ok

    async def _probe(self, r: Replica, spec: LocalSpec, now: float) -> None:
        if not r.started_ok:
            if spec.startup is None:
                r.started_ok = True
            else:
                ok = await self._run_probe(r, "startup", spec.startup, now)
                if ok is None:
                    return
                failures = r.probes["startup"].failures
                if ok:
                    r.started_ok = True
                    r.message = "started; waiting for the readiness check"
                elif failures >= spec.startup.failure_threshold:
                    self._kill_and_back_off(r, f"startup probe failed {failures} times in a row")
                return
        if spec.liveness is not None:
            ok = await self._run_probe(r, "liveness", spec.liveness, now)
            failures = r.probes["liveness"].failures if "liveness" in r.probes else 0
            if ok is False and failures >= spec.liveness.failure_threshold:
                self._kill_and_back_off(r, f"liveness probe failed {failures} times in a row")
                return
        timeout_applies = spec.startup is None and spec.liveness is None
        if spec.readiness is None:
            ok = await self._healthy(r)
            if r.state in LIVE and not r.killing:
                self._health(r, ok, now, may_kill=timeout_applies)
            return
        ready = await self._run_probe(r, "readiness", spec.readiness, now)
        state = r.probes.get("readiness")
        if ready is None or state is None:
            if (
                timeout_applies
                and r.state is ReplicaState.STARTING
                and now - r.started > self.settings.startup_timeout
            ):
                self._kill_and_back_off(r, f"not ready within {self.settings.startup_timeout:.0f}s")
            return
        if ready and state.successes >= spec.readiness.success_threshold:
            self._health(r, True, now)
        elif not ready and (
            r.state is ReplicaState.STARTING or state.failures >= spec.readiness.failure_threshold
        ):
            if r.state is ReplicaState.STARTING:
                r.message = f"starting: readiness probe failed {state.failures} time(s)"
                if timeout_applies and now - r.started > self.settings.startup_timeout:
                    self._kill_and_back_off(
                        r, f"not ready within {self.settings.startup_timeout:.0f}s"
                    )
            elif r.state is ReplicaState.READY:
                r.state = ReplicaState.UNREADY
                r.ready_since = None
                r.message = f"readiness probe failed {state.failures} times in a row"
                log.warning("replica %s is unready: %s", r.name, r.message)
                self._notify(r.owner)

    async def _healthy(self, r: Replica) -> bool:
        try:
            response = await self.client.get(
                f"{r.url(self.settings.host)}/health", timeout=self.settings.health_timeout
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def _health(self, r: Replica, ok: bool, now: float, *, may_kill: bool = True) -> None:
        s = self.settings
        if ok:
            r.failures = 0
            if r.state is not ReplicaState.READY:
                r.state = ReplicaState.READY
                r.ready_since = now
                r.message = ""
                log.info("replica %s is ready", r.name)
                self._notify(r.owner)
            elif r.ready_since is not None and now - r.ready_since >= s.restart_backoff_reset:
                r.backoff = s.restart_backoff_initial
            return
        r.failures += 1
        if r.state is ReplicaState.STARTING:
            if may_kill and now - r.started > s.startup_timeout:
                self._kill_and_back_off(r, f"not ready within {s.startup_timeout:.0f}s")
            return
        if r.state is ReplicaState.READY and r.failures >= s.failure_threshold:
            r.state = ReplicaState.UNREADY
            r.ready_since = None
            r.message = f"failed {r.failures} health checks in a row"
            log.warning("replica %s is unready: %s", r.name, r.message)
            self._notify(r.owner)
        elif may_kill and r.state is ReplicaState.UNREADY and r.failures >= 3 * s.failure_threshold:
            self._kill_and_back_off(r, f"failed {r.failures} health checks in a row")

    async def _exited(self, r: Replica, code: int | None) -> None:
        last = await asyncio.to_thread(processes.tail, r.log_path)
        if code is None:
            what = "exited (exit code unknown: adopted from a previous reconciler)"
        elif code < 0:
            what = f"killed by signal {-code}"
        else:
            what = f"exited with code {code}"
        log.warning("replica %s %s", r.name, what)
        self._back_off(r, what + (f" ({last})" if last else ""))

    def _back_off(self, r: Replica, why: str) -> None:
        s = self.settings
        r.state = ReplicaState.BACKOFF
        r.ready_since = None
        r.restart_at = time.monotonic() + r.backoff
        r.message = f"{why}; restarting in {r.backoff:.1f}s"
        r.backoff = min(r.backoff * 2, s.restart_backoff_max)
        self._notify(r.owner)

    def _kill_and_back_off(self, r: Replica, why: str) -> None:
        identity = r.identity
        self._back_off(r, why)
        if identity is None or self._tg is None:
            return
        r.killing = True

        async def kill() -> None:
            try:
                await processes.terminate(identity, self.settings.stop_grace)
            finally:
                r.killing = False

        self._spawn_task(kill(), f"kill:{r.name}")

    async def _restart(self, r: Replica) -> None:
        if r.template is None:
            # Adopted and not yet claimed by a plan: let the owner's plan start a fresh one.
            self._begin_stop(r)
            return
        async with self._locks[r.owner]:
            if r.state is not ReplicaState.BACKOFF or self.replicas.get(r.name) is not r:
                return
            if r.waiting_for_gpus:
                await self._spawn(r)  # not a restart: it never ran
                return
            r.restarts += 1
            log.info("restarting replica %s (restart %d)", r.name, r.restarts)
            await self._spawn(r)


def _exits(replicas: Sequence[Replica]) -> list[tuple[Replica, int | None]]:
    """Replicas whose process ended, with the exit code when known (runs in a thread)."""
    out: list[tuple[Replica, int | None]] = []
    for r in replicas:
        if r.process is not None:
            if r.process.returncode is not None:
                out.append((r, r.process.returncode))
            continue
        if r.identity is None or not processes.alive(r.identity):
            out.append((r, None))
    return out


def _ref_parts(ref: ObjectRef) -> tuple[str, str, str]:
    return ref.kind, ref.namespace, ref.name
