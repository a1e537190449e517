"""Bearer-token authentication: `Authorization: Bearer <token>` -> the token's grants.

Only SHA-256 digests of tokens exist in the router (the KV bucket is keyed by them), so
a token is hashed once and looked up; the secret itself is never stored, logged or
echoed. The lookup indexes digests by their first 64 bits and compares full digests
with `hmac.compare_digest` (see `Catalog.token`), so no comparison involving a
credential takes data-dependent time.

A missing header, another scheme or an empty token is 401 `missing_api_key`; an
unknown token is 401 `invalid_api_key`. Nothing here raises anything but ApiError.
"""

from __future__ import annotations

import hashlib

from arks_common.events import TokenGrant
from arks_router import api_errors
from arks_router.catalog import Catalog

_SCHEME = b"bearer "


def token_digest(token: bytes) -> str:
    return hashlib.sha256(token).hexdigest()


def authenticate(catalog: Catalog, authorization: bytes | None) -> TokenGrant:
    if not authorization or authorization[:7].lower() != _SCHEME:
        raise api_errors.missing_api_key()
    token = authorization[7:].strip()
    if not token:
        raise api_errors.missing_api_key()
    grant = catalog.token(token_digest(token))
    if grant is None:
        raise api_errors.invalid_api_key()
    return grant
