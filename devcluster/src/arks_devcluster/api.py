"""`FakeKubeApi`: the dev cluster's API server as one object, for HTTP and in-process use.

It owns the resource-type table (`registry`), the objects (`store`), the open watches
(`watches`) and the Starlette `app` that serves them over HTTP. Code in the same process
(tests, the simulated controllers) may call `create`, `get` and `fail_next` directly, or
talk HTTP to the URL `serve()` gives, as any client would.

Failure injection for tests: `fail_next(status, count, method=...)` answers the next
requests with that status (a Status with the usual reason and "injected failure").
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from arks_common.crds import crd_for
from arks_common.resources import KIND_INFO
from arks_devcluster import admission, auth, bodies, discovery, openapi, rest
from arks_devcluster.crd_registry import CrdRegistry
from arks_devcluster.deletion import Collector
from arks_devcluster.errors import REASONS, ApiError, no_resource, status_from
from arks_devcluster.registry import Registry
from arks_devcluster.resources import ResourceType, builtin_types
from arks_devcluster.store import Store
from arks_devcluster.watch import Watches

if TYPE_CHECKING:
    from arks_devcluster.kubelet.logs import PodLogs

Obj = dict[str, Any]


def default_types() -> list[ResourceType]:
    """The built-in types."""
    return builtin_types()


def arks_crds() -> list[Obj]:
    """The CRDs of the six arks.ai kinds, generated from the models (as deploy/crds)."""
    return [crd_for(kind) for kind in KIND_INFO]


class FakeKubeApi:
    """The objects, their history and the HTTP app serving them."""

    def __init__(
        self,
        types: Iterable[ResourceType] | None = None,
        *,
        crds: Iterable[Obj] | None = None,
        rbac: bool = False,
        admin_token: str | None = None,
    ) -> None:
        """`types`: the built-in types served (default: `default_types()`); `crds`: the
        CustomResourceDefinitions installed at start (default: the arks.ai ones);
        `rbac`: authenticate bearer tokens and enforce RBAC (see `auth`), with
        `admin_token` naming the administrator."""
        self.rbac = rbac
        self.tokens = auth.Tokens()
        if admin_token:
            self.tokens.add_admin(admin_token)
        self.registry = Registry(types if types is not None else default_types())
        self.store = Store(self.registry)
        self.crds = CrdRegistry(self.store)
        self.collector = Collector(self.store)
        self.watches = Watches(self.store)
        for crd in crds if crds is not None else arks_crds():
            self.create(crd)
        self._failures: list[tuple[int, str | None]] = []
        self.requests: list[tuple[str, str]] = []
        """(method, path) of every request, for tests."""
        self.pod_logs: PodLogs | None = None
        """Containers' output for `pods/<name>/log`, set by a running kubelet."""
        registry = self.registry

        def get(path: str, answer: Callable[[Request], Response]) -> Route:
            async def endpoint(request: Request) -> Response:
                return answer(request)

            return Route(path, self._wrap(endpoint, resource=False), methods=["GET"])

        self.app = Starlette(
            routes=[
                get("/version", lambda _: JSONResponse(discovery.VERSION_INFO)),
                get("/api", lambda r: discovery.core(registry, r)),
                get("/apis", lambda r: discovery.groups(registry, r)),
                get(
                    "/api/{version}", lambda r: discovery.resources(registry, "", _p(r, "version"))
                ),
                get("/apis/{group}", lambda r: discovery.group(registry, _p(r, "group"))),
                get(
                    "/apis/{group}/{version}",
                    lambda r: discovery.resources(registry, _p(r, "group"), _p(r, "version")),
                ),
                get("/openapi/v3", lambda _: JSONResponse(openapi.root(registry))),
                get("/openapi/v3/api/{version}", lambda r: _openapi(registry, "", r)),
                get(
                    "/openapi/v3/apis/{group}/{version}",
                    lambda r: _openapi(registry, _p(r, "group"), r),
                ),
                Route("/api/{version}/{rest:path}", self._wrap(self._rest), methods=rest.METHODS),
                Route(
                    "/apis/{group}/{version}/{rest:path}",
                    self._wrap(self._rest),
                    methods=rest.METHODS,
                ),
                # Anything else is a 404 Status, not Starlette's text/plain page.
                Route("/{rest:path}", self._wrap(_nothing, resource=False), methods=rest.METHODS),
            ]
        )

    def register(self, rtype: ResourceType) -> None:
        self.registry.register(rtype)

    def token_for(self, namespace: str, service_account: str) -> str:
        """A bearer token for a ServiceAccount (which need not exist), as TokenRequest
        mints them."""
        return self.tokens.mint(namespace, service_account)

    def fail_next(self, status: int, count: int = 1, *, method: str | None = None) -> None:
        """Answer the next `count` requests (of `method`, if given) with `status`
        (e.g. 409 to a PUT as if someone wrote the object first, 403, 429, 503)."""
        self._failures.extend([(status, method)] * count)

    # ------------------------------------------------------------------ direct access
    def get(self, api_version: str, plural: str, namespace: str, name: str) -> Obj | None:
        """A copy of an object, or None."""
        group, _, _ = api_version.rpartition("/")
        found = self.store.find(self.registry.resource(group, plural), namespace, name)
        return copy.deepcopy(found) if found is not None else None

    def create(self, obj: Obj) -> Obj:
        """Create an object as a client would (status kept: a test may seed it)."""
        rtype = self.registry.by_kind(obj["apiVersion"], obj["kind"])
        namespace = obj.get("metadata", {}).get("namespace", "default")
        body = copy.deepcopy(obj)
        self.admit(rtype, body, None)
        created = self.store.create(rtype, namespace, body, keep_status=True)
        return copy.deepcopy(created)

    def admit(
        self, rtype: ResourceType, obj: Obj, old: Obj | None, *, strict: bool = False
    ) -> None:
        """Check (and complete) an object about to be written; raise ApiError if refused."""
        admission.admit(rtype, obj, old, strict=strict)

    # ------------------------------------------------------------------ HTTP
    def _injected(self, method: str) -> Response | None:
        for index, (code, wanted) in enumerate(self._failures):
            if wanted is None or wanted == method:
                del self._failures[index]
                reason = REASONS.get(code, "InternalError")
                return JSONResponse(status_from(code, reason, "injected failure"), code)
        return None

    def _wrap(
        self, endpoint: Callable[[Request], Awaitable[Response]], *, resource: bool = True
    ) -> Callable[[Request], Awaitable[Response]]:
        """Every request: recorded, failure injection, authentication and RBAC (when on),
        ApiError as a Status."""

        async def handle(request: Request) -> Response:
            self.requests.append((request.method, request.url.path))
            injected = self._injected(request.method)
            if injected is not None:
                return injected
            try:
                if self.rbac:
                    self._authorize(request, resource=resource)
                return await endpoint(request)
            except ApiError as exc:
                return exc.response()

        return handle

    def _authorize(self, request: Request, *, resource: bool) -> None:
        user = self.tokens.authenticate(request.headers.get("authorization"))
        if not resource:
            # Discovery, /version and OpenAPI are open to every request: the kubectl on
            # these machines fetches OpenAPI without its token (a wrong token is still 401).
            return
        params = request.path_params
        parts = [p for p in params.get("rest", "").split("/") if p]
        namespace = None
        if len(parts) >= 2 and parts[0] == "namespaces" and (len(parts) > 2):
            namespace, parts = parts[1], parts[2:]
        elif len(parts) == 2 and parts[0] == "namespaces":
            parts = ["namespaces", parts[1]]
        if not parts:
            return
        name = parts[1] if len(parts) > 1 else None
        attrs = auth.Attributes(
            verb=auth.verb_of(request.method, name, bodies.flag(request.query_params.get("watch"))),
            group=params.get("group", ""),
            resource=parts[0],
            subresource=parts[2] if len(parts) > 2 else None,
            namespace=namespace,
            name=name,
        )
        if not auth.allowed(self.store, self.registry, user, attrs):
            raise auth.forbidden(user, attrs)

    async def _rest(self, request: Request) -> Response:
        params = request.path_params
        if not params["rest"].strip("/"):  # `/api/v1/`: the resource list, as without "/"
            return discovery.resources(self.registry, params.get("group", ""), params["version"])
        return await rest.handle(self, request)


async def _nothing(_: Request) -> Response:
    raise no_resource()


def _openapi(registry: Registry, group: str, request: Request) -> Response:
    doc = openapi.group_version_document(registry, group, _p(request, "version"))
    if doc is None:
        raise no_resource()
    return JSONResponse(doc)


def _p(request: Request, name: str) -> str:
    return str(request.path_params[name])
