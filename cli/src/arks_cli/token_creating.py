"""`arks token create`: a new ArksToken with a random bearer token, shown once.

The token is `sk-` followed by 43 URL-safe characters (256 bits from `secrets`). The
local store keeps only its sha256 (`spec.tokenSha256`), which the reconciler publishes
to the routers; on Kubernetes the ArksToken holds it in plain `spec.token`, as
upstream's CR (readable by whoever may read ArksTokens). Either way the command shows it
once: alone on stdout (so `$(arks token create ...)` captures it), the confirmation on
stderr.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from arks_cli.backends import Resources
from arks_cli.errors import CliError
from arks_cli.printing import qualified_name
from arks_common.errors import ArksError
from arks_common.resources import API_VERSION, ResourceError, parse_resource
from arks_common.resources.registry import KIND_INFO
from arks_common.store import AlreadyExistsError

TOKEN_PREFIX = "sk-"
TOKEN_BYTES = 32


@dataclass(frozen=True)
class TokenRequest:
    name: str
    namespace: str
    endpoints: list[str]
    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None
    tpd: int | None = None
    quota: str | None = None


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def token_object(request: TokenRequest, token: str) -> dict[str, Any]:
    """A valid ArksToken granting every endpoint the same limits and quota."""
    limits = [
        {"type": kind, "value": value}
        for kind, value in (
            ("rpm", request.rpm),
            ("tpm", request.tpm),
            ("rpd", request.rpd),
            ("tpd", request.tpd),
        )
        if value is not None
    ]
    qos: list[dict[str, Any]] = []
    for endpoint in request.endpoints:
        entry: dict[str, Any] = {"arksEndpoint": {"name": endpoint}, "rateLimits": limits}
        if request.quota:
            entry["quota"] = {"name": request.quota}
        qos.append(entry)
    obj: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "ArksToken",
        "metadata": {"name": request.name, "namespace": request.namespace},
        "spec": {"token": token, "qos": qos},
    }
    try:
        parse_resource(obj)
    except ResourceError as exc:
        raise CliError(str(exc)) from exc
    return obj


async def create_token(resources: Resources, request: TokenRequest) -> tuple[str, str]:
    """Create the ArksToken; returns (token, `arkstoken.arks.ai/NAME`)."""
    if not request.endpoints:
        raise CliError("--endpoint is required (repeat it to grant several endpoints)")
    token = new_token()
    obj = token_object(request, token)
    label = qualified_name(KIND_INFO["ArksToken"], request.name)
    try:
        await resources.create(obj)
    except AlreadyExistsError as exc:
        raise CliError(
            f"{label} already exists in namespace {request.namespace}; "
            "delete it first or choose another name"
        ) from exc
    except ArksError as exc:
        raise CliError(f"{label}: {exc}") from exc
    return token, label
