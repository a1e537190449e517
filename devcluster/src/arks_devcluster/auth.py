"""Authentication and (optional) RBAC authorization.

Off by default: every request is allowed, tokens or not, as the tests of code that only
needs an API server expect. With `FakeKubeApi(rbac=True)` (`arks-devcluster serve
--rbac`):

- a bearer token names a user: the admin token (the kubeconfig's) is `admin` in group
  `system:masters`, which may do anything; a token minted for a ServiceAccount (the
  TokenRequest subresource, `kubectl create token`, or `FakeKubeApi.token_for`) is
  `system:serviceaccount:<ns>:<name>` in groups `system:serviceaccounts`,
  `system:serviceaccounts:<ns>` and `system:authenticated`; an unknown token is 401; no
  token is `system:anonymous`;
- a resource request is allowed exactly when a rule of a Role (through a RoleBinding in
  the request's namespace) or a ClusterRole (through a ClusterRoleBinding anywhere, or a
  RoleBinding in the namespace) bound to the user or one of its groups matches it: verb
  (get, list, watch, create, update, patch, delete, deletecollection; `*`), API group,
  resource or `resource/subresource` (`*`, `*/status`), and `resourceNames` when given
  (which never match list, watch, create or deletecollection, as upstream);
- otherwise 403 Forbidden with upstream's message (`arksquotas "q" is forbidden: User
  "..." cannot list resource "arksquotas" in API group "arks.ai" in the namespace "x"`);
- discovery, `/version` and OpenAPI are open to every request, anonymous included (a
  real cluster grants them to authenticated users only, but the kubectl 1.32 build on
  these machines fetches OpenAPI without sending its token).

Aggregated ClusterRoles and non-resource URL rules are not evaluated.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from arks_devcluster.errors import ApiError
from arks_devcluster.registry import Registry
from arks_devcluster.store import Store

Obj = dict[str, Any]
RBAC = "rbac.authorization.k8s.io"
_NAMELESS_VERBS = ("list", "watch", "create", "deletecollection")


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()

    @property
    def admin(self) -> bool:
        return "system:masters" in self.groups


ANONYMOUS = User("system:anonymous", ("system:unauthenticated",))


@dataclass
class Attributes:
    verb: str
    group: str
    resource: str
    subresource: str | None
    namespace: str | None
    name: str | None

    @property
    def resource_path(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


@dataclass
class Tokens:
    """Bearer tokens and whom they name."""

    users: dict[str, User] = field(default_factory=dict)

    def add_admin(self, token: str) -> None:
        self.users[token] = User("admin", ("system:masters", "system:authenticated"))

    def mint(self, namespace: str, service_account: str) -> str:
        token = secrets.token_urlsafe(32)
        self.users[token] = User(
            f"system:serviceaccount:{namespace}:{service_account}",
            (
                "system:serviceaccounts",
                f"system:serviceaccounts:{namespace}",
                "system:authenticated",
            ),
        )
        return token

    def authenticate(self, authorization: str | None) -> User:
        if not authorization:
            return ANONYMOUS
        scheme, _, token = authorization.partition(" ")
        user = self.users.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        return user


def verb_of(method: str, name: str | None, watch: bool) -> str:
    if method == "GET":
        if watch:
            return "watch"
        return "get" if name else "list"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    return "delete" if name else "deletecollection"


def _bound(subjects: list[Obj], user: User, namespace: str) -> bool:
    for subject in subjects or []:
        kind, name = subject.get("kind"), subject.get("name")
        if kind == "User" and name == user.name:
            return True
        if kind == "Group" and name in user.groups:
            return True
        if kind == "ServiceAccount":
            sa_namespace = subject.get("namespace") or namespace
            if user.name == f"system:serviceaccount:{sa_namespace}:{name}":
                return True
    return False


def _matches(rule: Obj, attrs: Attributes) -> bool:
    verbs = rule.get("verbs") or []
    if "*" not in verbs and attrs.verb not in verbs:
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and attrs.group not in groups:
        return False
    resources = rule.get("resources") or []
    wanted = attrs.resource_path
    star_sub = f"*/{attrs.subresource}" if attrs.subresource else None
    if not any(r in ("*", wanted, star_sub) for r in resources):
        return False
    names = rule.get("resourceNames") or []
    if names:
        return attrs.verb not in _NAMELESS_VERBS and attrs.name in names
    return True


def _rules(store: Store, registry: Registry, kind: str, namespace: str, name: str) -> list[Obj]:
    plural = "clusterroles" if kind == "ClusterRole" else "roles"
    try:
        rtype = registry.resource(RBAC, plural)
    except KeyError:
        return []
    role = store.find(rtype, namespace if kind == "Role" else "", name)
    return list((role or {}).get("rules") or [])


def allowed(store: Store, registry: Registry, user: User, attrs: Attributes) -> bool:
    if user.admin:
        return True
    rules: list[Obj] = []
    for binding in store.items(registry.resource(RBAC, "clusterrolebindings"), None):
        if _bound(binding.get("subjects") or [], user, ""):
            ref = binding.get("roleRef") or {}
            rules += _rules(store, registry, "ClusterRole", "", ref.get("name", ""))
    if attrs.namespace:
        rolebindings = registry.resource(RBAC, "rolebindings")
        for binding in store.items(rolebindings, attrs.namespace):
            if _bound(binding.get("subjects") or [], user, attrs.namespace):
                ref = binding.get("roleRef") or {}
                rules += _rules(
                    store, registry, ref.get("kind", "Role"), attrs.namespace, ref.get("name", "")
                )
    return any(_matches(rule, attrs) for rule in rules)


def forbidden(user: User, attrs: Attributes) -> ApiError:
    target = f"{attrs.resource}.{attrs.group}" if attrs.group else attrs.resource
    subject = f'{target} "{attrs.name}"' if attrs.name else target
    scope = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    return ApiError(
        403,
        "Forbidden",
        f'{subject} is forbidden: User "{user.name}" cannot {attrs.verb} resource '
        f'"{attrs.resource_path}" in API group "{attrs.group}" {scope}',
        {"name": attrs.name or "", "group": attrs.group, "kind": attrs.resource},
    )
