"""The quickstart `arks up` applies, and the wait until it answers through the router.

`examples/quickstart/local.yaml` names a model that needs no download: an ArksModel with
no `source` and a `storage.localPath`. A path from a manifest cannot know where this
checkout's `.arks/` is, so before applying, every such model whose localPath is not an
existing directory is pointed at `.arks/models/<namespace>/<name>/`, which `arks up`
creates with a small generated `config.json` (the engine simulator reads the context
length from it; there are no weights).

Readiness, in the order things become true: each ArksApplication of the file reports
`readyReplicas >= replicas`; the router's `GET /v1/models` (with a token from the file)
lists each ArksEndpoint; one tiny chat completion answers 200. The completion is sent
once per endpoint (retried only on 5xx), because the quickstart token allows 5 requests
a minute and the newcomer's curl must still get through.
"""

from __future__ import annotations

import asyncio
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from arks_cli.console import Console
from arks_cli.errors import CliError
from arks_cli.manifests import Manifest
from arks_cli.printing import qualified_name
from arks_common.resources import (
    AnyResource,
    ArksApplication,
    ArksEndpoint,
    ArksToken,
    kind_info,
)
from arks_common.store import ResourceStore

QUICKSTART_RELATIVE = Path("examples") / "quickstart" / "local.yaml"
POLL_INTERVAL = 0.5
CHAT_ATTEMPTS = 5
RETRIED_STATUSES = (401, 404)
GENERATED_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 3584,
    "num_attention_heads": 28,
    "num_hidden_layers": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 32768,
    "vocab_size": 152064,
    "torch_dtype": "bfloat16",
}


def find_quickstart(explicit: str | None, cwd: Path) -> Path:
    """The manifest to apply: --quickstart-file, else local.yaml in cwd or the checkout."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise CliError(f"{explicit}: no such file")
        return path
    candidates = [
        cwd / QUICKSTART_RELATIVE,
        Path(__file__).resolve().parents[3] / QUICKSTART_RELATIVE,
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise CliError(
        f"cannot find {QUICKSTART_RELATIVE}; pass --quickstart-file FILE or --no-quickstart"
    )


def localize_models(manifests: list[Manifest], models_root: Path) -> list[tuple[str, Path]]:
    """Point download-free models without files at generated stand-ins; returns (name, dir)."""
    moved: list[tuple[str, Path]] = []
    for manifest in manifests:
        obj = manifest.obj
        if obj.get("kind") != "ArksModel" or (obj["spec"].get("source") or {}).get("huggingface"):
            continue
        storage = obj["spec"].setdefault("storage", {})
        current = storage.get("localPath")
        if current and Path(current).is_dir():
            continue
        meta = obj["metadata"]
        directory = (models_root / meta.get("namespace", "default") / meta["name"]).resolve()
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "config.json"
        if not config.exists():
            body = {"_name_or_path": obj["spec"]["model"], **GENERATED_CONFIG}
            config.write_text(json.dumps(body, indent=2) + "\n")
        storage["localPath"] = str(directory)
        storage.pop("subPath", None)
        moved.append((meta["name"], directory))
    return moved


@dataclass(frozen=True)
class Probe:
    """One endpoint to check through the router, with a token granted for it."""

    namespace: str
    endpoint: str
    token: str


def probes(resources: list[AnyResource]) -> list[Probe]:
    """Each endpoint of the file that some token of the file may call."""
    tokens = [r for r in resources if isinstance(r, ArksToken)]
    found = []
    for endpoint in (r for r in resources if isinstance(r, ArksEndpoint)):
        token = next(
            (
                t
                for t in tokens
                if t.namespace == endpoint.namespace
                and t.grant_for(endpoint.name) is not None
                and t.spec.token is not None  # a digest alone cannot be sent
            ),
            None,
        )
        if token is not None and token.spec.token is not None:
            found.append(
                Probe(endpoint.namespace, endpoint.name, token.spec.token.get_secret_value())
            )
    return found


def curl_line(router_url: str, probe: Probe) -> str:
    """Upstream README's curl, pointed at this router."""
    body = json.dumps(
        {"model": probe.endpoint, "messages": [{"role": "user", "content": "Hello, who are you?"}]}
    )
    return (
        f"curl {router_url}/v1/chat/completions \\\n"
        f'  -H "Authorization: Bearer {probe.token}" \\\n'
        '  -H "Content-Type: application/json" \\\n'
        f"  -d {shlex.quote(body)}"
    )


async def wait_for_applications(
    store: ResourceStore, resources: list[AnyResource], console: Console
) -> None:
    """Until every ArksApplication of the file has all its replicas ready."""
    apps = [r for r in resources if isinstance(r, ArksApplication)]
    for app in apps:
        wanted = app.spec.replicas
        if wanted <= 0:
            continue
        label = qualified_name(kind_info("ArksApplication"), app.name)
        last_phase = None
        while True:
            obj = await store.get("ArksApplication", app.namespace, app.name)
            status: dict[str, Any] = (obj or {}).get("status") or {}
            phase = status.get("phase")
            if phase != last_phase and phase:
                console.info(f"{label}: {phase}")
                last_phase = phase
            if int(status.get("readyReplicas") or 0) >= wanted:
                break
            await asyncio.sleep(POLL_INTERVAL)


async def wait_for_router(client: httpx.AsyncClient, probe: Probe, console: Console) -> None:
    """Until GET /v1/models with the probe's token lists its endpoint."""
    headers = {"Authorization": f"Bearer {probe.token}"}
    while True:
        try:
            response = await client.get("/v1/models", headers=headers)
            if response.status_code == 200:
                names = {m.get("id") for m in response.json().get("data", [])}
                if probe.endpoint in names:
                    return
        except (httpx.HTTPError, ValueError):
            pass
        await asyncio.sleep(POLL_INTERVAL)


async def first_completion(client: httpx.AsyncClient, probe: Probe, console: Console) -> None:
    """One tiny chat completion. 200 is the answer; 429 (the token's limits or quota are
    used up, say after many restarts today) still proves the path works. While routes and
    grants propagate the router may answer 401, 404 or 5xx: those are retried a few times.
    """
    body = {
        "model": probe.endpoint,
        "messages": [{"role": "user", "content": "ping"}],
        "max_tokens": 4,
    }
    headers = {"Authorization": f"Bearer {probe.token}"}
    last = ""
    for _ in range(CHAT_ATTEMPTS):
        try:
            response = await client.post("/v1/chat/completions", json=body, headers=headers)
        except httpx.HTTPError as exc:
            last = str(exc) or type(exc).__name__
        else:
            if response.status_code == 200:
                return
            if response.status_code == 429:
                console.warn(
                    f"{probe.endpoint} answers, but its token is rate limited or out of quota "
                    f"now: {response.text[:200]}"
                )
                return
            last = f"HTTP {response.status_code}: {response.text[:200]}"
            if response.status_code not in RETRIED_STATUSES and response.status_code < 500:
                break
        await asyncio.sleep(1.0)
    raise CliError(f"{probe.endpoint} does not answer through the router: {last}")
