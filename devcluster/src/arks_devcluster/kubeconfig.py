"""Kubeconfig files pointing at a dev cluster, as kubectl and kubernetes-asyncio read them.

One cluster (`server: <url>`; with the serving certificate as
`certificate-authority-data` when the server speaks HTTPS), one user with a bearer
token, one context named `arks-dev` made current. The file is written with mode 0600
because it carries a token, replacing any file already there; it is written beside
and renamed into place, so a launcher waiting for the file never reads half of it.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml

CONTEXT = "arks-dev"


def kubeconfig(
    url: str, token: str, *, namespace: str = "default", ca_pem: bytes | None = None
) -> str:
    cluster: dict[str, str] = {"server": url}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": cluster}],
        "users": [{"name": CONTEXT, "user": {"token": token}}],
        "contexts": [
            {
                "name": CONTEXT,
                "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace},
            }
        ],
        "current-context": CONTEXT,
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write_kubeconfig(path: Path, url: str, token: str, *, ca_pem: bytes | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(kubeconfig(url, token, ca_pem=ca_pem))
    os.replace(partial, path)
    return path
