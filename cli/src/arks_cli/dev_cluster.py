"""`arks cluster up|down|status`: the dev cluster (docs/dev-cluster.md) in the background.

`up` starts `arks-devcluster serve` in its own session (API server with the arks.ai and
bundled CRDs, controllers, kubelet) with its data and logs under `.arks/cluster/`,
waits until it has written `.arks/kubeconfig` (it does so once it listens and its nodes
are registered) and records the process in `.arks/cluster.json`. `down` sends SIGTERM
(the cluster stops its pods' processes, then exits), kills the process group if it does
not finish in time, and removes the kubeconfig and the record. Only a process that is
still the recorded one (pid and start time) is ever signalled.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
from pydantic import BaseModel, ValidationError

from arks_cli import processes
from arks_cli.console import Console
from arks_cli.errors import CliError
from arks_cli.stack_state import ProcessRecord

RECORD = "cluster.json"
KUBECONFIG = "kubeconfig"
DEFAULT_PORT = 6443
POLL = 0.1


class ClusterRecord(BaseModel):
    process: ProcessRecord
    url: str
    kubeconfig: str
    log: str


def _executable() -> str:
    beside = Path(sys.executable).parent / "arks-devcluster"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("arks-devcluster")
    if found is None:
        raise CliError("arks-devcluster is not installed (it comes with arks-devcluster)")
    return found


def _read(root: Path) -> ClusterRecord | None:
    try:
        return ClusterRecord.model_validate_json((root / RECORD).read_bytes())
    except (OSError, ValidationError, ValueError):
        return None


def _write(root: Path, record: ClusterRecord) -> None:
    target = root / RECORD
    temporary = target.with_name(f".{RECORD}.{os.getpid()}.tmp")
    temporary.write_text(record.model_dump_json(indent=2) + "\n")
    temporary.replace(target)


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def up(args: argparse.Namespace) -> int:
    console = Console()
    root = Path(args.dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    running = _read(root)
    if running is not None and processes.alive(running.process):
        raise CliError(
            f"a dev cluster already runs from {root} ({running.url}, pid {running.process.pid}); "
            "stop it with `arks cluster down`"
        )
    port = args.port
    if port is None:
        port = DEFAULT_PORT if _port_free("127.0.0.1", DEFAULT_PORT) else 0
    kubeconfig = root / KUBECONFIG
    kubeconfig.unlink(missing_ok=True)
    log_path = root / "logs" / "cluster.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = [_executable(), "serve", "--port", str(port), "--kubeconfig-out", str(kubeconfig)]
    argv += ["--workdir", str(root / "cluster")]
    if args.config:
        argv += ["--config", str(Path(args.config).resolve())]
    if args.rbac:
        argv.append("--rbac")
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + float(args.timeout)
    while not kubeconfig.is_file():
        try:
            proc.wait(timeout=POLL)
        except subprocess.TimeoutExpired:
            if time.monotonic() > deadline:
                proc.kill()
                raise CliError(
                    f"the dev cluster did not start within {args.timeout:.0f}s; see {log_path}"
                ) from None
            continue
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        raise CliError("the dev cluster stopped during start-up:\n" + "\n".join(tail))
    url = _server_of(kubeconfig)
    record = processes.record_of("arks-devcluster", proc.pid, log=str(log_path))
    _write(
        root, ClusterRecord(process=record, url=url, kubeconfig=str(kubeconfig), log=str(log_path))
    )
    console.raw(f"The dev cluster is up at {url} (pid {proc.pid}); logs in {log_path}")
    console.raw(f"\n  export KUBECONFIG={kubeconfig}\n  kubectl get nodes\n")
    console.raw("Stop it with `arks cluster down`.")
    return 0


def _server_of(kubeconfig: Path) -> str:
    for line in kubeconfig.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("server:"):
            return stripped.split(":", 1)[1].strip()
    return "?"


def down(args: argparse.Namespace) -> int:
    console = Console()
    root = Path(args.dir).resolve()
    record = _read(root)
    if record is None:
        raise CliError(f"no dev cluster to stop: no {root / RECORD}")
    if processes.signal_record(record.process, signal.SIGTERM, group=False):
        with contextlib.suppress(psutil.Error):  # gone already, or still running (below)
            psutil.Process(record.process.pid).wait(timeout=float(args.timeout))
        if processes.alive(record.process):
            console.warn(f"the dev cluster did not stop within {args.timeout:.0f}s; killing it")
            processes.signal_record(record.process, signal.SIGKILL, group=True)
        console.info("stopped the dev cluster")
    else:
        console.info("the dev cluster was not running")
    (root / RECORD).unlink(missing_ok=True)
    Path(record.kubeconfig).unlink(missing_ok=True)
    return 0


def status(args: argparse.Namespace) -> int:
    root = Path(args.dir).resolve()
    record = _read(root)
    if record is None or not processes.alive(record.process):
        Console().raw("the dev cluster is not running")
        return 3
    Console().raw(
        f"the dev cluster runs at {record.url} (pid {record.process.pid}); "
        f"KUBECONFIG={record.kubeconfig}"
    )
    return 0
