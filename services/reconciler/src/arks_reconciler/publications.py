"""What the data plane reads, built purely from resources: route tables, grants, quotas.

- `endpoint_routing`: an ArksEndpoint's RouteTable (one backend per ready replica of each
  application in the namespace whose served model name is the endpoint's name, weight
  `defaultWeight`, plus the static `routeConfigs`) and its upstream-shaped `status.routes`.
  Every replica's backend carries its application (`RouteBackend.application`) and the
  application's weight: the router splits traffic among applications by weight, then
  among an application's replicas by the strategy, so weights apply per application as
  `status.routes` says (not per replica).
  A static backend named `arks-application-<app>` stands for that application: its ready
  replicas get the static weight and the application is not discovered again (upstream's
  "skip apps a static route already names").
- `token_grant`: the TokenGrant of an ArksToken (published under sha256 of the token).
- `quota_spec`: the QuotaSpec of an ArksQuota (limits, money budget in nanos, prices).
- `token_owners`: which ArksToken owns each token hash; duplicates lose deterministically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from arks_common import events, ledger, resources
from arks_reconciler.plans import SERVICE_PORT, application_of_service, service_name
from arks_reconciler.platform import Backend

MAX_STATUS_ROUTES = 16


@dataclass(frozen=True)
class AppBackends:
    """An application (either kind) of the endpoint's namespace and its ready replicas."""

    name: str
    served_model_name: str
    backends: tuple[Backend, ...] = ()
    deleting: bool = False


@dataclass(frozen=True)
class EndpointRouting:
    table: events.RouteTable
    status_routes: list[resources.HTTPBackendRef]
    unresolved: list[str] = field(default_factory=list)
    """Static backends that cannot be reached on this platform."""
    applications: list[str] = field(default_factory=list)
    """Applications with at least one backend in the table."""


def _conditions(
    items: Sequence[resources.HTTPHeaderMatch | resources.HTTPQueryParamMatch] | None,
) -> list[events.HeaderMatch]:
    return [events.HeaderMatch(type=i.type, name=i.name, value=i.value) for i in items or ()]


def _route_matches(endpoint: resources.ArksEndpoint) -> list[events.PathMatch]:
    """Every matchConfigs entry whole (path, method, headers, query parameters): the
    router forwards a request only when one of them matches it."""
    return [
        events.PathMatch(
            type=m.path.type,
            value=m.path.value,
            method=m.method,
            headers=_conditions(m.headers),
            query_params=_conditions(m.query_params),
        )
        for m in endpoint.spec.match_configs
    ] or [events.PathMatch()]


def endpoint_routing(
    endpoint: resources.ArksEndpoint,
    apps: Mapping[str, AppBackends],
    static_urls: Sequence[str | None],
) -> EndpointRouting:
    """`apps`: every application of the endpoint's namespace by name; `static_urls[i]`:
    the platform's URL of `routeConfigs[i]` (None when unreachable)."""
    spec = endpoint.spec
    namespace = endpoint.namespace
    backends: list[events.RouteBackend] = []
    status_routes: list[resources.HTTPBackendRef] = []
    unresolved: list[str] = []
    named: set[str] = set()
    routed_apps: list[str] = []

    def app_backends(app: AppBackends, weight: int, source: str) -> list[events.RouteBackend]:
        return [
            events.RouteBackend(
                name=app.name,
                url=b.url,
                weight=weight,
                source="static" if source == "static" else "discovered",
                application=app.name,
                replica=b.replica,
            )
            for b in app.backends
        ]

    for index, ref in enumerate(spec.route_configs):
        status_routes.append(ref)
        target = application_of_service(ref.name)
        same_ns = ref.namespace in (None, namespace)
        if target is not None and same_ns and target in apps and ref.kind == "Service":
            named.add(target)
            app = apps[target]
            if not app.deleting:
                found = app_backends(app, ref.weight, "static")
                backends += found
                if found:
                    routed_apps.append(app.name)
            continue
        url = static_urls[index] if index < len(static_urls) else None
        if url is None:
            unresolved.append(ref.name)
            continue
        backends.append(
            events.RouteBackend(name=ref.name, url=url, weight=ref.weight, source="static")
        )
    for name in sorted(apps):
        app = apps[name]
        if name in named or app.deleting or app.served_model_name != endpoint.name:
            continue
        found = app_backends(app, spec.default_weight, "discovered")
        if not found:
            continue
        backends += found
        routed_apps.append(name)
        status_routes.append(
            resources.HTTPBackendRef(
                name=service_name(name), port=SERVICE_PORT, weight=spec.default_weight
            )
        )
    table = events.RouteTable(
        namespace=namespace,
        endpoint=endpoint.name,
        strategy=spec.strategy,
        session_header=spec.session_header,
        matches=_route_matches(endpoint),
        backends=backends,
        generation=endpoint.metadata.generation or 0,
        created_at=endpoint.metadata.creation_timestamp,
    )
    return EndpointRouting(
        table=table,
        status_routes=status_routes[:MAX_STATUS_ROUTES],
        unresolved=unresolved,
        applications=routed_apps,
    )


def token_grant(token: resources.ArksToken) -> events.TokenGrant:
    grants = [
        events.EndpointGrant(
            endpoint=endpoint,
            rate_limits=[
                events.RateLimitValue(type=limit.type, value=limit.value)
                for limit in qos.rate_limits
            ],
            quota=qos.quota.name if qos.quota is not None and qos.quota.name else None,
        )
        for endpoint, qos in token.spec.grants().items()
    ]
    return events.TokenGrant(namespace=token.namespace, token_name=token.name, grants=grants)


def _age_key(token: resources.ArksToken) -> tuple[str, str, str]:
    created = token.metadata.creation_timestamp
    stamp = created.isoformat() if created is not None else "9999"
    return (stamp, token.namespace, token.name)


def token_owners(
    tokens: Sequence[resources.ArksToken],
) -> tuple[dict[str, resources.ArksToken], dict[tuple[str, str], resources.ArksToken]]:
    """(hash → owning token, (ns, name) → the owner of a token that lost its hash).

    The oldest token (creationTimestamp, then namespace/name) owns a repeated token string;
    upstream's "first list hit wins" was ambiguous.
    """
    owners: dict[str, resources.ArksToken] = {}
    losers: dict[tuple[str, str], resources.ArksToken] = {}
    for token in sorted(tokens, key=_age_key):
        digest = token.spec.token_hash()
        owner = owners.get(digest)
        if owner is None:
            owners[digest] = token
        else:
            losers[(token.namespace, token.name)] = owner
    return owners, losers


def quota_spec(quota: resources.ArksQuota) -> events.QuotaSpec:
    spec = quota.spec
    budget = spec.budget
    return events.QuotaSpec(
        namespace=quota.namespace,
        name=quota.name,
        limits=[events.QuotaLimit(type=q.type, value=q.value) for q in spec.quotas],
        budget_nanos=ledger.to_nanos(budget.limit) if budget is not None else None,
        currency=budget.currency if budget is not None else "USD",
        prices=[
            events.EndpointPrice(
                endpoint=p.endpoint,
                prompt=p.prompt,
                cached_prompt=p.cached_prompt_price,
                completion=p.completion,
            )
            for p in spec.prices
        ],
        price_version=spec.price_version() if spec.prices else "",
        reset_period=spec.reset_period,
    )
