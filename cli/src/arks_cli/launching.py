"""`arks up` (what `make run` runs): the whole stack on one machine, in the foreground.

Start-up, in order: clean up after a previous `arks up` that was killed; load or
generate the broker credentials (`arks_cli.credentials`, `.arks/credentials.json`); start
nats-server (JetStream, store `.arks/nats`) and Valkey (`.arks/valkey`, fsync-always
AOF), each on its conventional port (4222 / 6379) when free, else on a free port,
and from then on supervised like the services (`brokers`: a killed broker is restarted
on the same port with the same data); create the NATS topology; start every service as
a supervised child process (see `service_catalog` for their environment and
`supervising` for restarts); wait for each `/readyz`; write `.arks/state.json` (and
again whenever a broker or service restarts: it names the live pids); apply the
quickstart and wait until it answers through the router; print the curl line.

Stop (Ctrl-C, SIGTERM, or `arks down`), in reverse: the services (SIGTERM to each
process group, SIGKILL after a grace period), then whatever processes they left
behind (engine replicas the reconciler did not stop: `arks up` is their subreaper, so
they are still its descendants), then Valkey and NATS, and a last sweep. A second
Ctrl-C skips the grace periods. Nothing started by the stack outlives it.

Failures the user can act on (a port taken, a service that never gets ready) end the
command with one `error:` line after everything started so far is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil

from arks_cli import applying, backends, credentials, processes, quickstart, stopping
from arks_cli.brokers import Broker
from arks_cli.connecting import open_bus
from arks_cli.console import Console
from arks_cli.errors import CliError
from arks_cli.manifests import read_manifests
from arks_cli.service_catalog import HOST, RECONCILER, ROUTER, KubeTarget, StackPaths, plan
from arks_cli.stack_state import (
    ProcessRecord,
    StackState,
    remove_state,
    write_state,
)
from arks_cli.supervising import Child
from arks_common import access, embedded
from arks_common.access import Credentials
from arks_common.embedded import NatsServer, ValkeyServer, free_port
from arks_common.errors import ArksError
from arks_common.messaging import Bus
from arks_common.resources import AnyResource, parse_resource
from arks_common.store import ResourceStore

T = TypeVar("T")

NATS_PORT = 4222
VALKEY_PORT = 6379
ROUTER_PORT = 8080
STOP_GRACE = 25.0
BROKER_STOP_GRACE = 5.0
LEFTOVER_GRACE = 5.0
TRACK_INTERVAL = 1.0
READY_POLL = 0.25
SIGNAL_DEBOUNCE = 1.0
STARTUP_EXITS = 3
LOG_TAIL = 10


@dataclass(frozen=True)
class UpOptions:
    root: Path
    router_port: int | None
    nats_port: int | None
    valkey_port: int | None
    quickstart_file: str | None
    no_quickstart: bool
    ready_timeout: float
    without: tuple[str, ...] = ()
    detached: bool = False
    kube: KubeTarget | None = None
    """Set with `--platform kubernetes`: the cluster the reconciler drives."""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> UpOptions:
        root = Path(args.dir).resolve()
        return cls(
            root=root,
            router_port=args.router_port,
            nats_port=args.nats_port,
            valkey_port=args.valkey_port,
            quickstart_file=args.quickstart_file,
            no_quickstart=bool(args.no_quickstart),
            ready_timeout=float(args.ready_timeout),
            without=tuple(args.without or ()),
            detached=bool(getattr(args, "detached_child", False)),
            kube=kube_target(args, root),
        )


def kube_target(args: argparse.Namespace, root: Path) -> KubeTarget | None:
    """The cluster of `--platform kubernetes` (None: the local platform): `--kubeconfig`,
    else `$KUBECONFIG`, else the dev cluster's `<dir>/kubeconfig` (`arks cluster up`)."""
    chosen = backends.choose_platform(
        getattr(args, "platform", None),
        kubeconfig=getattr(args, "kubeconfig", None),
        context=getattr(args, "context", None),
    )
    if chosen.name != "kubernetes":
        return None
    if chosen.kubeconfig:
        return KubeTarget(str(Path(chosen.kubeconfig).resolve()), chosen.context)
    if os.environ.get("KUBECONFIG"):
        return KubeTarget(None, chosen.context)
    dev = root / "kubeconfig"
    if not dev.is_file():
        raise CliError(
            f"--platform kubernetes: no cluster to use — neither --kubeconfig nor $KUBECONFIG "
            f"is given and {dev} does not exist; start the dev cluster with `arks cluster up`"
        )
    return KubeTarget(str(dev), chosen.context)


def choose_port(explicit: int | None, conventional: int, what: str, console: Console) -> int:
    """The explicit port (which must be free), else the conventional one, else a free one."""
    if explicit is not None:
        if explicit != 0 and not embedded.port_is_free(explicit, HOST):
            raise CliError(f"port {explicit} for {what} is already in use")
        return explicit or free_port()
    if embedded.port_is_free(conventional, HOST):
        return conventional
    port = free_port()
    console.info(f"port {conventional} is taken; {what} uses {port}")
    return port


class Launcher:
    """One `arks up` run: owns the brokers, the children and the state file."""

    def __init__(self, options: UpOptions, console: Console) -> None:
        self.options = options
        self.console = console
        self.paths = StackPaths(options.root)
        self.nats: NatsServer | None = None
        self.valkey: ValkeyServer | None = None
        self.secrets: Credentials | None = None
        self.children: list[Child] = []
        self.brokers: list[Broker] = []
        self.router_url: str | None = None
        self.bus: Bus | None = None
        self.ready = False
        self.hint: str | None = None
        self.stop = asyncio.Event()
        self.force = asyncio.Event()
        self._stopping = False
        self._started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._descendants: list[ProcessRecord] = []
        self._zombies: set[int] = set()
        self._bus_cm: contextlib.AbstractAsyncContextManager[Bus] | None = None

    # ------------------------------------------------------------------ state file
    def _named_brokers(self) -> list[tuple[str, NatsServer | ValkeyServer]]:
        named = (("nats-server", self.nats), ("valkey-server", self.valkey))
        return [(name, server) for name, server in named if server is not None]

    def _broker_records(self) -> list[ProcessRecord]:
        records = []
        for name, server in self._named_brokers():
            if server.proc is not None and server.running:
                log = str(server.log_file) if server.log_file else None
                records.append(processes.record_of(name, server.proc.pid, log=log))
        return records

    def _child_records(self) -> list[ProcessRecord]:
        return [
            processes.record_of(c.name, pid, log=str(c.spec.log_path), ready_url=c.spec.ready_url)
            for c in self.children
            if (pid := c.pid) is not None
        ]

    def write_state(self) -> None:
        if self.nats is None or self.valkey is None or self._stopping:
            return
        me = processes.record_of("arks up", os.getpid())
        write_state(
            self.paths.root,
            StackState(
                dir=str(self.paths.root),
                supervisor_pid=me.pid,
                supervisor_create_time=me.create_time,
                started_at=self._started_at,
                nats_url=self.nats.url,
                redis_url=self.valkey.url,
                router_url=self.router_url,
                ready=self.ready,
                hint=self.hint,
                processes=[*self._broker_records(), *self._child_records()],
                descendants=self._descendants,
            ),
        )

    # ------------------------------------------------------------------ start-up
    async def start_brokers(self) -> None:
        opts, console, paths = self.options, self.console, self.paths
        nats_port = choose_port(opts.nats_port, NATS_PORT, "NATS", console)
        valkey_port = choose_port(opts.valkey_port, VALKEY_PORT, "Valkey", console)
        self.secrets = credentials.load_or_create(paths.root, console.warn)
        self.nats = NatsServer(
            paths.nats,
            nats_port,
            log_file=paths.log("nats"),
            authorization=self.secrets.nats_authorization(),
        )
        self.valkey = ValkeyServer(
            paths.valkey, valkey_port, log_file=paths.log("valkey"), auth=self.secrets.valkey_auth()
        )
        for server in (self.nats, self.valkey):
            try:
                await asyncio.to_thread(server.start)
            except ArksError as exc:
                raise CliError(
                    f"{server.name} did not start: {exc} (log: {server.log_file})"
                ) from exc
        console.info(f"nats-server   {self.nats.url}  (data {paths.nats}, log {paths.log('nats')})")
        console.info(
            f"valkey-server {self.valkey.url}  (data {paths.valkey}, log {paths.log('valkey')})"
        )
        self.write_state()

    def supervise_brokers(self, tg: asyncio.TaskGroup) -> None:
        """From now on a broker that dies is restarted like a service (see `brokers`)."""
        for name, server in self._named_brokers():
            log_path = server.log_file or self.paths.log(server.name)
            broker = Broker(name, server, log_path, self.console, on_change=self.write_state)
            self.brokers.append(broker)
            tg.create_task(broker.run(), name=f"supervise:{name}")

    async def open_bus(self) -> Bus:
        assert self.nats is not None
        assert self.secrets is not None
        admin = self.secrets.nats_settings(
            access.ADMIN, self.nats.url, connect_timeout=1.0, connect_deadline=3.0
        )
        self._bus_cm = open_bus(admin, name="arks-up")
        self.bus = await self._bus_cm.__aenter__()
        await self.bus.ensure_topology()
        return self.bus

    def start_services(self, tg: asyncio.TaskGroup) -> None:
        assert self.nats is not None
        assert self.valkey is not None
        opts = self.options
        router_port = choose_port(opts.router_port, ROUTER_PORT, "the router", self.console)
        specs, missing = plan(
            self.paths,
            nats_url=self.nats.url,
            redis_url=self.valkey.url,
            router_port=router_port,
            without=opts.without,
            secrets=self.secrets,
            kube=opts.kube,
        )
        for gone in missing:
            if gone.command is not None:
                self.console.info(f"{gone.name} not started (--without); to run it: {gone.command}")
            else:
                self.console.warn(f"{gone.name} is not started: {gone.reason}")
        for spec in specs:
            child = Child(spec, self.console, on_change=self.write_state)
            self.children.append(child)
            tg.create_task(child.run(), name=f"supervise:{spec.name}")
            if spec.name == ROUTER:
                self.router_url = f"http://{HOST}:{router_port}"

    async def wait_ready(self) -> None:
        pending = {c.name: c for c in self.children if c.spec.ready_url}
        deadline = asyncio.get_running_loop().time() + self.options.ready_timeout
        async with httpx.AsyncClient(timeout=2.0) as client:
            while pending:
                for name, child in list(pending.items()):
                    url = child.spec.ready_url
                    assert url is not None
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(url)).status_code == 200:
                            del pending[name]
                            self.console.info(
                                f"{name:<17} ready (pid {child.pid}, log {child.spec.log_path})"
                            )
                if not pending:
                    break
                crashing = next((c for c in pending.values() if c.exits >= STARTUP_EXITS), None)
                if crashing is not None:
                    log_path = crashing.spec.log_path
                    text = await asyncio.to_thread(log_path.read_text, errors="replace")
                    tail = "\n".join(f"  {line}" for line in text.splitlines()[-LOG_TAIL:])
                    raise CliError(
                        f"{crashing.name} {crashing.last_exit} {crashing.exits} times while "
                        f"starting; the end of {log_path}:\n{tail}"
                    )
                if asyncio.get_running_loop().time() > deadline:
                    logs = ", ".join(f"{c.name}: {c.spec.log_path}" for c in pending.values())
                    raise CliError(
                        f"not ready after {self.options.ready_timeout:.0f}s: "
                        f"{', '.join(pending)} (logs: {logs})"
                    )
                await asyncio.sleep(READY_POLL)

    async def apply_quickstart(self) -> list[AnyResource]:
        """Apply the quickstart file (a bad file stops the stack: nothing to wait for)."""
        assert self.bus is not None
        path = quickstart.find_quickstart(self.options.quickstart_file, Path.cwd())
        manifests = read_manifests([str(path)], None)
        for name, directory in quickstart.localize_models(manifests, self.paths.models):
            self.console.info(f"model {name}: no download needed, files in {directory}")
        self.console.info(f"applying {path}")
        await applying.apply_manifests(
            ResourceStore(self.bus), manifests, lambda line: self.console.info(f"  {line}")
        )
        return [parse_resource(m.obj) for m in manifests]

    async def await_quickstart(self, resources: list[AnyResource]) -> None:
        """Until the quickstart answers through the router; then the curl line is known."""
        assert self.bus is not None
        probes = quickstart.probes(resources)
        if self.router_url is None or not probes:
            self.console.warn(
                "no router (or no endpoint with a token): not waiting for the quickstart"
            )
            return
        if RECONCILER in {c.name for c in self.children}:
            await quickstart.wait_for_applications(ResourceStore(self.bus), resources, self.console)
        async with httpx.AsyncClient(base_url=self.router_url, timeout=30.0) as client:
            for probe in probes:
                await quickstart.wait_for_router(client, probe, self.console)
                await quickstart.first_completion(client, probe, self.console)
                self.console.info(f"{probe.endpoint} answers through the router")
        self.hint = quickstart.curl_line(self.router_url, probes[0])

    # ------------------------------------------------------------------ background
    async def track(self, ancestors: list[ProcessRecord]) -> None:
        """Reap adopted orphans, remember the services' descendants (for `arks down`),
        and stop when the process that launched us (`make run`) is gone."""
        while not self._stopping:
            gone = await asyncio.to_thread(_first_gone, ancestors)
            if gone is not None:
                self.console.info(f"{gone.name} (pid {gone.pid}), which started arks up, is gone")
                self.stop.set()
                return
            own = {r.pid for r in self._broker_records()} | {
                c.pid for c in self.children if c.pid is not None
            }
            found, self._zombies = await asyncio.to_thread(
                _snapshot_descendants, own, self._zombies
            )
            if {(r.pid, r.create_time) for r in found} != {
                (r.pid, r.create_time) for r in self._descendants
            }:
                self._descendants = found
                self.write_state()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), TRACK_INTERVAL)

    # ------------------------------------------------------------------ shutdown
    async def shutdown(self) -> None:
        self._stopping = True
        self.stop.set()
        if self.children:
            self.console.info("stopping the services")
        for child in reversed(self.children):
            await child.stop(0.0 if self.force.is_set() else STOP_GRACE, self.force)
            self.console.info(f"{child.name} stopped")
        brokers = {r.pid for r in self._broker_records()}
        leftovers = await asyncio.to_thread(processes.descendants, brokers)
        if leftovers:
            names = ", ".join(sorted({_name(p) for p in leftovers}))
            self.console.info(f"stopping {len(leftovers)} leftover processes ({names})")
            grace = 0.5 if self.force.is_set() else LEFTOVER_GRACE
            await asyncio.to_thread(processes.terminate_all, leftovers, grace)
        if self._bus_cm is not None:
            with contextlib.suppress(Exception):
                await self._bus_cm.__aexit__(None, None, None)
            self._bus_cm = None
        for broker in reversed(self.brokers):  # no restart from now on; Valkey first
            await broker.stop(BROKER_STOP_GRACE)
        for server in (self.valkey, self.nats):  # one that start-up left unsupervised
            if server is not None:
                await asyncio.to_thread(server.stop, BROKER_STOP_GRACE)
        rest = await asyncio.to_thread(processes.descendants, ())
        if rest:
            await asyncio.to_thread(processes.terminate_all, rest, 0.5)
        remove_state(self.paths.root)
        self.console.info("stopped")


def _name(proc: psutil.Process) -> str:
    try:
        return str(proc.name())
    except psutil.Error:
        return str(proc.pid)


def _first_gone(records: list[ProcessRecord]) -> ProcessRecord | None:
    return next((r for r in records if not processes.alive(r)), None)


def _snapshot_descendants(own: set[int], zombies: set[int]) -> tuple[list[ProcessRecord], set[int]]:
    """The live descendants, and the zombies to reap next time (see `reap_adopted`)."""
    lingering = processes.reap_adopted(own, zombies)
    found = []
    for proc in processes.descendants(own):
        with contextlib.suppress(psutil.Error):
            found.append(
                ProcessRecord(
                    name=proc.name(),
                    pid=proc.pid,
                    pgid=os.getpgid(proc.pid),
                    create_time=proc.create_time(),
                )
            )
    return found, lingering


async def _until(stop: asyncio.Event, work: Coroutine[Any, Any, T]) -> tuple[bool, T | None]:
    """Run `work` unless `stop` is set first: (finished, result)."""
    task: asyncio.Task[T] = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, waiter):
            if not pending.done():
                pending.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({task})
    if task.cancelled():
        return False, None
    return True, task.result()


async def _with_timeout(seconds: float, work: Awaitable[T], what: str) -> T:
    try:
        async with asyncio.timeout(seconds):
            return await work
    except TimeoutError as exc:
        raise CliError(f"{what} within {seconds:.0f}s") from exc


async def run(options: UpOptions, console: Console) -> int:
    launcher = Launcher(options, console)
    loop = asyncio.get_running_loop()
    first_signal: float | None = None

    def on_signal() -> None:
        nonlocal first_signal
        now = loop.time()
        if first_signal is None:
            first_signal = now
            console.info("stopping (press Ctrl-C again to skip the grace periods)")
            launcher.stop.set()
        elif now - first_signal > SIGNAL_DEBOUNCE:
            # Not an echo of the first: under `make run` one Ctrl-C reaches us both from
            # the terminal and forwarded by the wrappers, within milliseconds.
            console.info("skipping the grace periods")
            launcher.force.set()

    # Read before our handlers replace the inherited SIGHUP disposition.
    ancestors = [] if options.detached else await asyncio.to_thread(processes.launching_ancestors)
    # SIGHUP: the terminal went away. Left alone when ignored (nohup): then the user
    # wants the stack to outlive the terminal.
    signals = [signal.SIGINT, signal.SIGTERM]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signals.append(signal.SIGHUP)
    for sig in signals:
        loop.add_signal_handler(sig, on_signal)
    code = 0
    try:
        options.root.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(stopping.clean_stale, options.root, console)
        if processes.become_subreaper() is False:
            console.warn("cannot adopt orphaned processes here; a crashed service may leave some")
        async with asyncio.TaskGroup() as tg:
            try:
                code = await _serve(launcher, tg, options, console, ancestors)
            except CliError as exc:
                first, *rest = exc.message.splitlines() or [""]
                console.raw("\n".join([f"error: {first}", *rest]))
                code = exc.exit_code
            finally:
                await launcher.shutdown()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    return code


async def _serve(
    launcher: Launcher,
    tg: asyncio.TaskGroup,
    options: UpOptions,
    console: Console,
    ancestors: list[ProcessRecord],
) -> int:
    console.info(f"arks up: data, logs and state in {options.root}")
    if options.kube is not None:
        console.info(
            "platform kubernetes: the reconciler drives the cluster of "
            f"{options.kube.kubeconfig or '$KUBECONFIG'}"
            + (f" (context {options.kube.context})" if options.kube.context else "")
        )
    await launcher.start_brokers()
    launcher.supervise_brokers(tg)
    await launcher.open_bus()
    launcher.start_services(tg)
    tg.create_task(launcher.track(ancestors), name="track-descendants")
    finished, _ = await _until(
        launcher.stop,
        _with_timeout(options.ready_timeout, launcher.wait_ready(), "services not ready"),
    )
    if not finished:
        return 0
    if options.kube is not None:
        where = options.kube.kubeconfig or "$KUBECONFIG"
        launcher.hint = (
            f"  export KUBECONFIG={where}\n"
            "  kubectl apply -f <your ArksModel, ArksApplication, ArksEndpoint, ArksToken>\n"
            f"  curl {launcher.router_url or 'http://<router>'}/v1/chat/completions "
            "-H 'Authorization: Bearer <token>' ..."
        )
    elif not options.no_quickstart:
        finished, resources = await _until(launcher.stop, launcher.apply_quickstart())
        if not finished or resources is None:
            return 0
        try:
            finished, _ = await _until(
                launcher.stop,
                _with_timeout(
                    options.ready_timeout,
                    launcher.await_quickstart(resources),
                    "the quickstart did not answer through the router",
                ),
            )
        except CliError as exc:
            # The services run: keep them, so the person can look at what went wrong.
            console.warn(
                f"{exc.message}; the stack keeps running: see `arks get arkapp,aep,am`, "
                f"`arks describe arkapp <name>` and {launcher.paths.logs}"
            )
        if not finished:
            return 0
    launcher.ready = True
    launcher.write_state()
    console.raw("")
    if launcher.router_url:
        console.raw(f"Arks is up. Router: {launcher.router_url}   Logs: {launcher.paths.logs}")
    else:
        console.raw(f"Arks is up (without a router).   Logs: {launcher.paths.logs}")
    if launcher.hint:
        console.raw("Try it:\n")
        console.raw(launcher.hint)
    console.raw("\nCtrl-C (or `arks down`) stops everything.")
    await launcher.stop.wait()
    return 0


def main(args: argparse.Namespace) -> int:
    console = Console()
    if args.detach:
        from arks_cli import detaching

        return detaching.start_detached(args, console)
    return asyncio.run(run(UpOptions.from_args(args), console))
