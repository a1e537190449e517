"""The services `arks up` runs, and the environment each one is configured with.

Every service reads typed settings from `ARKS_*` variables (`arks_common.settings`);
the launcher sets:

- all: `ARKS_NATS__URL`, `ARKS_REDIS__URL`, `ARKS_HEALTH__HOST=127.0.0.1`,
  `ARKS_HEALTH__PORT` (a distinct free port), `ARKS_TELEMETRY__LOG_JSON=true`, and its
  own credentials only (`arks_cli.credentials.service_env`): `ARKS_NATS__USER`,
  `ARKS_NATS__PASSWORD`, `ARKS_NATS__INBOX_PREFIX`, and for the router and the
  accountant `ARKS_REDIS__USERNAME` / `ARKS_REDIS__PASSWORD` (credential variables the
  user exported are not passed on);
- arks-reconciler: `ARKS_PLATFORM=local`, `ARKS_LOCAL__DATA_DIR=.arks`,
  `ARKS_LOCAL__LOG_DIR=.arks/logs` (replica logs), `ARKS_LOCAL__MODELS_DIR=.arks/models`,
  `ARKS_LOCAL__STOP_ON_EXIT=true` (replicas stop with the stack),
  `ARKS_SHUTDOWN__DRAIN_TIMEOUT=15` (above the replicas' 10 s stop grace);
- arks-router: `ARKS_HTTP__HOST=127.0.0.1`, `ARKS_HTTP__PORT` (8080 by default: the
  OpenAI API only; its `/readyz` and `/metrics` are on its health port like every
  service's), `ARKS_USAGE__SPOOL_DIR=.arks/router-spool`;
- arks-accountant: the common variables;
- arks-model-cache: `ARKS_CACHE__ROOT=.arks/models` (the same root the reconciler uses).

With `--platform kubernetes` the reconciler runs `ARKS_PLATFORM=kubernetes` against the
cluster of `ARKS_KUBERNETES__KUBECONFIG` (`--kubeconfig`; else `$KUBECONFIG`, passed on
as it is; else `.arks/kubeconfig`, the dev cluster's) and `__CONTEXT`; the accountant
writes quota usage into ArksQuota status (`ARKS_STATUS__WRITER=kubernetes`, same
cluster); the model cache is not started (download Jobs run in the cluster).

Anything else the user exported (`ARKS_LOCAL__SIM_TIME_SCALE=20`, ...) passes through;
the variables above win. A service whose console script or module is missing from this
checkout is reported as unavailable rather than crash-looping.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from arks_cli import credentials
from arks_cli.supervising import ChildSpec
from arks_common import access
from arks_common.access import Credentials
from arks_common.embedded import free_port

HOST = "127.0.0.1"
RECONCILER = "arks-reconciler"
ROUTER = "arks-router"
ACCOUNTANT = "arks-accountant"
MODEL_CACHE = "arks-model-cache"
#: Start order; `arks up` stops them in reverse.
SERVICES = (RECONCILER, ACCOUNTANT, MODEL_CACHE, ROUTER)
RECONCILER_DRAIN_SECONDS = 15


@dataclass(frozen=True)
class KubeTarget:
    """The cluster the reconciler and the accountant talk to (`--platform kubernetes`)."""

    kubeconfig: str | None
    """None: `$KUBECONFIG` as the services inherit it."""
    context: str | None = None

    def env(self) -> dict[str, str]:
        out = {}
        if self.kubeconfig:
            out["ARKS_KUBERNETES__KUBECONFIG"] = self.kubeconfig
        if self.context:
            out["ARKS_KUBERNETES__CONTEXT"] = self.context
        return out


@dataclass(frozen=True)
class StackPaths:
    """Where the stack keeps its data (everything under one `.arks` directory)."""

    root: Path

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def nats(self) -> Path:
        return self.root / "nats"

    @property
    def valkey(self) -> Path:
        return self.root / "valkey"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def router_spool(self) -> Path:
        return self.root / "router-spool"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"


@dataclass(frozen=True)
class Unavailable:
    """A service `arks up` does not start, why, and how to run it by hand (`--without`)."""

    name: str
    reason: str
    command: str | None = None


def _script(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def availability(name: str) -> str | None:
    """None when `name` can run; otherwise why it cannot."""
    entries = metadata.entry_points(group="console_scripts", name=name)
    entry = next(iter(entries), None)
    if entry is None:
        return f"no console script {name} is installed"
    try:
        found = importlib.util.find_spec(entry.module)
    except (ImportError, ValueError) as exc:
        return f"its module {entry.module} cannot be imported ({exc})"
    if found is None:
        return f"its module {entry.module} does not exist in this checkout yet"
    if _script(name) is None:
        return f"the {name} script is not on PATH"
    return None


def _common_env(nats_url: str, redis_url: str, health_port: int) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if k not in credentials.CREDENTIAL_ENV}
    return {
        **inherited,
        "ARKS_NATS__URL": nats_url,
        "ARKS_REDIS__URL": redis_url,
        "ARKS_HEALTH__HOST": HOST,
        "ARKS_HEALTH__PORT": str(health_port),
        "ARKS_TELEMETRY__LOG_JSON": "true",
        "PYTHONUNBUFFERED": "1",
    }


def plan(
    paths: StackPaths,
    *,
    nats_url: str,
    redis_url: str,
    router_port: int,
    without: tuple[str, ...] = (),
    secrets: Credentials | None = None,
    kube: KubeTarget | None = None,
) -> tuple[list[ChildSpec], list[Unavailable]]:
    """The child specs of every available service, in start order, and the unavailable
    (`kube`: the services of the Kubernetes platform, see the module docstring)."""
    specs: list[ChildSpec] = []
    missing: list[Unavailable] = []
    for name in SERVICES:
        if kube is not None and name == MODEL_CACHE:
            continue  # models download in Jobs on the cluster
        reason = availability(name)
        script = _script(name)
        if reason is not None or script is None:
            missing.append(Unavailable(name, reason or "not found"))
            continue
        spec = _spec(name, script, paths, nats_url, redis_url, router_port)
        if kube is not None:
            _on_kubernetes(spec, kube)
        if secrets is not None:
            spec.env.update(credentials.service_env(secrets, name))
        if name in without:
            settings = " ".join(
                f"{key}={_shown(key, value, name)}"
                for key, value in sorted(spec.env.items())
                if os.environ.get(key) != value and key.startswith("ARKS_")
            )
            missing.append(Unavailable(name, "--without", f"{settings} {name}"))
            continue
        specs.append(spec)
    return specs, missing


def _on_kubernetes(spec: ChildSpec, kube: KubeTarget) -> None:
    if spec.name == RECONCILER:
        for key in [k for k in spec.env if k.startswith("ARKS_LOCAL__")]:
            del spec.env[key]
        spec.env.update({"ARKS_PLATFORM": "kubernetes", **kube.env()})
    elif spec.name == ACCOUNTANT:
        spec.env.update({"ARKS_STATUS__WRITER": "kubernetes", **kube.env()})


def _shown(key: str, value: str, service: str) -> str:
    """A value for the command line printed for `--without`; a password is read from
    the credentials file when that command runs, never printed."""
    if key not in (credentials.NATS_PASSWORD_ENV, credentials.REDIS_PASSWORD_ENV):
        return shlex.quote(value)
    broker = "nats" if key == credentials.NATS_PASSWORD_ENV else "valkey"
    user = access.SERVICE_USERS[service]
    return f'"$(arks credentials {broker} {user})"'


def _spec(
    name: str, script: str, paths: StackPaths, nats_url: str, redis_url: str, router_port: int
) -> ChildSpec:
    health_port = free_port()
    env = _common_env(nats_url, redis_url, health_port)
    ready_url = f"http://{HOST}:{health_port}/readyz"
    if name == RECONCILER:
        env.update(
            {
                "ARKS_PLATFORM": "local",
                "ARKS_LOCAL__DATA_DIR": str(paths.root),
                "ARKS_LOCAL__LOG_DIR": str(paths.logs),
                "ARKS_LOCAL__MODELS_DIR": str(paths.models),
                # The whole stack stops together: take the replicas down too (a
                # crashed reconciler still leaves them to its successor to adopt).
                "ARKS_LOCAL__STOP_ON_EXIT": "true",
                # Longer than the replicas' stop grace (10 s), so slow engines are
                # stopped before the reconciler exits; `arks up` waits longer still.
                "ARKS_SHUTDOWN__DRAIN_TIMEOUT": str(RECONCILER_DRAIN_SECONDS),
            }
        )
    elif name == ROUTER:
        env.update(
            {
                "ARKS_HTTP__HOST": HOST,
                "ARKS_HTTP__PORT": str(router_port),
                "ARKS_USAGE__SPOOL_DIR": str(paths.router_spool),
            }
        )
    elif name == MODEL_CACHE:
        env["ARKS_CACHE__ROOT"] = str(paths.models)
    return ChildSpec(
        name=name,
        argv=[script],
        env=env,
        log_path=paths.log(name),
        cwd=paths.root.parent,
        ready_url=ready_url,
    )
