"""Hub tokens named by a job's `token_secret` (the ArksModel's tokenSecretRef).

On the local platform a Secret is a directory laid out like a Kubernetes secret volume:
`<secrets_dir>/<namespace>/<secret>/HF_TOKEN` holds the token. (In Kubernetes the
download Job gets the key as the HF_TOKEN variable instead, as upstream Arks does.) A
missing secret is reported as `unauthorized` and retryable: it may be created later.
"""

from __future__ import annotations

import re
from pathlib import Path

from arks_common.events import ModelCacheErrorKind
from arks_model_cache.failures import DownloadFailure

TOKEN_KEY = "HF_TOKEN"
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def token_from_secret(secrets_dir: Path, namespace: str, secret: str) -> str:
    for value, what in ((namespace, "namespace"), (secret, "secret name")):
        if not _NAME_RE.fullmatch(value):
            raise DownloadFailure(
                ModelCacheErrorKind.UNAUTHORIZED,
                f"invalid {what} {value!r} in the token secret reference",
                retryable=False,
            )
    path = secrets_dir / namespace / secret / TOKEN_KEY
    try:
        token = path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        token = ""
    if not token:
        raise DownloadFailure(
            ModelCacheErrorKind.UNAUTHORIZED,
            f"secret {namespace}/{secret} has no key {TOKEN_KEY} (expected in {path})",
            retryable=True,
        )
    return token
