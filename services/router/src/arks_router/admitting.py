"""Everything between a request's arrival and the first byte to an engine.

The request already passed `surface` (a normal-form path, a known route, an allowed
method). In order, failing fast and charging nothing until the last step:

1. readiness (503 `not_ready` until the initial KV state is loaded);
2. authentication (401, before the body is read, so unauthenticated clients cannot
   make the router buffer bodies);
3. the body, within `http.max_body_bytes` (413);
4. the JSON object body (400 `invalid_json`, `invalid_request`), its `model`
   (400 `missing_model`) and the other fields the router relies on (`validating`,
   400 `invalid_request` naming the `param`);
5. the endpoint, in the token's namespace only: 404 `model_not_found` when no
   endpoint of that name exists there, 403 `model_not_permitted` when it exists but
   the token has no grant for it, 404 `path_not_routed` when none of its matchConfigs
   matches the request (path, method, headers, query parameters);
6. `stream_options.include_usage` injected into streaming chat/completions requests
   that lack it (the usage chunk is then stripped from the client's stream);
7. the candidates (503 `no_backend_available` before anything is charged);
8. the quota (503 `quota_unavailable` when the grant names a quota the router does
   not know; 429 `insufficient_quota` at once when the accountant has declared it
   exhausted for this period), then the one-round-trip admission (429, 503).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from arks_common import ledger
from arks_common.events import QuotaSpec, QuotaStateChanged
from arks_router import api_errors, estimating, governing, limits, validating
from arks_router.authenticating import authenticate
from arks_router.catalog import Catalog, Endpoint
from arks_router.exchanges import Exchange, header
from arks_router.matching import Request
from arks_router.routing import registry
from arks_router.routing.prefix_affinity import PrefixAffinity, prefix_blocks
from arks_router.routing.selecting import Fleet
from arks_router.settings import RouterSettings

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


class ClientGone(Exception):
    """The client disconnected before the response ended."""


def not_ready() -> api_errors.ApiError:
    return api_errors.ApiError(
        503,
        "The router has not loaded its routes and tokens yet.",
        code="not_ready",
        type="server_error",
        retry_after=1.0,
    )


def quota_unavailable(quota: str) -> api_errors.ApiError:
    return api_errors.ApiError(
        503,
        f"The quota '{quota}' of this API key is not known to the router yet.",
        code="quota_unavailable",
        type="server_error",
        retry_after=1.0,
    )


class Admitter:
    def __init__(
        self,
        settings: RouterSettings,
        catalog: Catalog,
        fleet: Fleet,
        governor: governing.Governor,
        ready: Callable[[], bool],
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._fleet = fleet
        self._governor = governor
        self._ready = ready

    async def admit(self, ex: Exchange, receive: Receive) -> None:
        """Fill `ex` up to an admitted, ranked request, or raise ApiError/ClientGone."""
        if not self._ready():
            raise not_ready()
        token = authenticate(self._catalog, header(ex.headers, b"authorization"))
        ex.namespace = token.namespace
        ex.token_name = token.token_name
        ex.body = await read_body(receive, ex.headers, self._settings.http.max_body_bytes)
        payload = _payload(ex.body)
        model = validating.model_of(payload)
        validating.validate(ex.kind, payload)
        endpoint = self._catalog.endpoint(ex.namespace, model)
        grant = token.grant_for(model)
        if endpoint is None:
            raise api_errors.model_not_found(model)
        if grant is None:
            raise api_errors.model_not_permitted(model)
        if not endpoint.serves(Request(ex.method, ex.path, ex.headers, ex.query)):
            raise api_errors.path_not_routed(model, ex.method, ex.path)
        ex.endpoint, ex.grant = endpoint, grant
        self._shape(ex, payload)
        self._rank(ex, endpoint)
        await self._govern(ex)

    # ------------------------------------------------------------------ the body
    def _shape(self, ex: Exchange, payload: dict[str, Any]) -> None:
        """Streaming flags, usage injection, the estimate and the prompt for routing."""
        ex.stream = payload.get("stream") is True
        if ex.stream and ex.kind in (estimating.ApiKind.CHAT, estimating.ApiKind.COMPLETIONS):
            options = payload.get("stream_options")
            if not isinstance(options, dict) or options.get("include_usage") is not True:
                kept = options if isinstance(options, dict) else {}
                payload["stream_options"] = {**kept, "include_usage": True}
                ex.strip_usage = True
                ex.body = orjson.dumps(payload)
        ex.estimate = estimating.estimate(ex.kind, payload, self._settings.governance)
        ex.prompt = estimating.prompt_text(ex.kind, payload)

    # ------------------------------------------------------------------ routing
    def _rank(self, ex: Exchange, endpoint: Endpoint) -> None:
        table = endpoint.table
        strategy = registry.resolve(
            table.strategy,
            self._settings.routing.default_strategy,
            [b.weight for b in table.backends],
        )
        if strategy.name == PrefixAffinity.name and ex.prompt:
            ex.prefix_blocks = prefix_blocks(
                ex.prompt,
                self._settings.routing.prefix_block_chars,
                self._settings.routing.prefix_max_blocks,
            )
        session_value = header(ex.headers, table.session_header.lower().encode("latin-1"))
        ex.ranked = self._fleet.rank(
            table,
            strategy,
            prefix_blocks=ex.prefix_blocks,
            session=session_value.decode("latin-1") if session_value else None,
        )
        if not ex.ranked:
            raise api_errors.no_backend(endpoint.name)

    # ------------------------------------------------------------------ governance
    async def _govern(self, ex: Exchange) -> None:
        assert ex.grant is not None
        quota_plan: governing.QuotaPlan | None = None
        if ex.grant.quota:
            spec = self._catalog.quota(ex.namespace, ex.grant.quota)
            if spec is None:
                raise quota_unavailable(ex.grant.quota)
            period = ledger.period_id(spec.reset_period)
            ex.quota, ex.quota_period = spec.name, period
            _refuse_if_exhausted(spec, self._catalog.quota_state(ex.namespace, spec.name), period)
            quota_plan = governing.quota_plan(spec, ex.endpoint_name, ex.estimate, period)
        plan = governing.Plan(
            request_id=ex.request_id,
            namespace=ex.namespace,
            token_name=ex.token_name,
            endpoint=ex.endpoint_name,
            rules=limits.rules_for(ex.grant, self._settings.governance),
            estimate=ex.estimate,
            quota=quota_plan,
        )
        ex.admission = await self._governor.admit(plan)


def _refuse_if_exhausted(spec: QuotaSpec, state: QuotaStateChanged | None, period: str) -> None:
    """Trust the accountant's 'exhausted' only for this period and these very limits,
    so a stale state can never block a quota that was reset or raised since."""
    if state is None or not state.exhausted or state.period != period:
        return
    current: dict[str, int] = {limit.type: limit.value for limit in spec.limits}
    if spec.budget_nanos is not None:
        current[ledger.QuotaKind.COST.value] = spec.budget_nanos
    if state.limits and any(current.get(kind) != value for kind, value in state.limits.items()):
        return
    kinds = ", ".join(state.exhausted_kinds) or "its"
    raise api_errors.ApiError(
        429,
        f"The quota '{spec.name}' has exhausted {kinds} budget.",
        code="insufficient_quota",
        type="insufficient_quota",
        param=state.exhausted_kinds[0] if state.exhausted_kinds else None,
    )


def _payload(body: bytes) -> dict[str, Any]:
    """The JSON object body every forwarded API takes."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise api_errors.invalid_json(str(exc).split(":")[0]) from None
    if not isinstance(data, dict):
        raise api_errors.invalid_body("The request body must be a JSON object.")
    return data


async def read_body(receive: Receive, headers: list[tuple[bytes, bytes]], limit: int) -> bytes:
    declared = header(headers, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise api_errors.request_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise api_errors.request_too_large(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if len(chunks) == 1:
        return chunks[0]
    return b"".join(chunks)
