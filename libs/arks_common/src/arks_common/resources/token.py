"""ArksToken: a bearer token granting, per endpoint, rate limits and a quota.

The token string is a `SecretStr`: it never shows in reprs or logs. Upstream's CR holds
it in `spec.token`; ours may hold only its digest, `spec.tokenSha256` (our extension),
which is all that verifying a bearer token needs: the local resource store replaces a
written `spec.token` with it (`hashed()`), so no plaintext token is stored, and on
Kubernetes an operator may commit the digest instead of the token. `hash_token` is the
one digest every component uses to key tokens (KV, caches), so that only hashes travel.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from pydantic import (
    Field,
    SecretStr,
    WithJsonSchema,
    field_serializer,
    field_validator,
    model_validator,
)

from arks_common.resources.meta import (
    ArksBaseModel,
    ArksResource,
    Int64,
    LocalObjectReference,
    ResourceStatus,
)

RateLimitType = Literal["rpm", "rpd", "tpm", "tpd"]

#: Window of each rate-limit type, in seconds.
RATE_LIMIT_WINDOWS: dict[str, int] = {"rpm": 60, "rpd": 86400, "tpm": 60, "tpd": 86400}

TokenString = Annotated[SecretStr, WithJsonSchema({"type": "string", "minLength": 1})]


def hash_token(token: str) -> str:
    """Hex sha256 of a token string: the key under which tokens are published and cached."""
    return hashlib.sha256(token.encode()).hexdigest()


class RateLimit(ArksBaseModel):
    """A limit on requests (rpm, rpd) or tokens (tpm, tpd) per minute or day."""

    type: RateLimitType = Field(description="rpm, rpd (requests) or tpm, tpd (tokens).")
    value: Int64 = Field(ge=0, description="Limit per window (>= 0).")


class Qos(ArksBaseModel):
    """What a token may do with one endpoint."""

    arks_endpoint: LocalObjectReference = Field(
        description="The ArksEndpoint (public model name) this entry grants."
    )
    rate_limits: list[RateLimit] = Field(
        default_factory=list,
        description="Rate limits; each type at most once.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
    quota: LocalObjectReference | None = Field(
        None, description="ArksQuota (same namespace) charged for this endpoint's usage."
    )

    @field_validator("rate_limits")
    @classmethod
    def _one_limit_per_type(cls, limits: list[RateLimit]) -> list[RateLimit]:
        seen: set[str] = set()
        for limit in limits:
            if limit.type in seen:
                # Upstream double-counts duplicates (they share one counter); refuse them.
                raise ValueError(f"type {limit.type!r} is listed twice; keep one limit per type")
            seen.add(limit.type)
        return limits

    def limit(self, type_: RateLimitType) -> int | None:
        """The limit of the given type, or None when unlimited."""
        return next((r.value for r in self.rate_limits if r.type == type_), None)


class ArksTokenSpec(ArksBaseModel):
    """Desired state of an ArksToken."""

    token: TokenString | None = Field(
        None,
        description="The bearer token clients send (upstream). Give this or tokenSha256; "
        "the local store keeps only its sha256.",
    )
    token_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="Hex sha256 of the bearer token, instead of the token itself.",
    )
    qos: list[Qos] = Field(description="Grants, one per endpoint.")

    @field_validator("token")
    @classmethod
    def _not_empty(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and not token.get_secret_value():
            raise ValueError("must not be empty")
        return token

    @model_validator(mode="after")
    def _token_or_digest(self) -> ArksTokenSpec:
        if self.token is None and self.token_sha256 is None:
            raise ValueError("give spec.token (the bearer token) or spec.tokenSha256")
        if (
            self.token is not None
            and self.token_sha256 is not None
            and hash_token(self.token.get_secret_value()) != self.token_sha256
        ):
            raise ValueError("spec.tokenSha256 is not the sha256 of spec.token")
        return self

    @field_serializer("token", when_used="always")
    def _reveal(self, token: SecretStr | None) -> str | None:
        return token.get_secret_value() if token is not None else None

    def hashed(self) -> ArksTokenSpec:
        """This spec with the token replaced by its digest (what may be stored)."""
        return self.model_copy(update={"token": None, "token_sha256": self.token_hash()})

    def grants(self) -> dict[str, Qos]:
        """Grants by endpoint name; the first entry wins for a repeated endpoint (upstream)."""
        result: dict[str, Qos] = {}
        for entry in self.qos:
            result.setdefault(entry.arks_endpoint.name, entry)
        return result

    def grant_for(self, endpoint: str) -> Qos | None:
        """The grant for an endpoint (public model name), or None: no access."""
        return self.grants().get(endpoint)

    def token_hash(self) -> str:
        """`hash_token` of this token (`tokenSha256` when only the digest is known)."""
        if self.token is None:
            assert self.token_sha256 is not None  # the model validator requires one
            return self.token_sha256
        return hash_token(self.token.get_secret_value())


class ArksTokenStatus(ResourceStatus):
    """Observed state of an ArksToken (upstream has none; ours has conditions)."""


class ArksToken(ArksResource[ArksTokenSpec, ArksTokenStatus]):
    """ArksToken is a bearer token with per-endpoint rate limits and quotas."""

    kind: Literal["ArksToken"] = Field("ArksToken", description="Always ArksToken.")

    def grant_for(self, endpoint: str) -> Qos | None:
        """`spec.grant_for(endpoint)`."""
        return self.spec.grant_for(endpoint)
