"""Image references: which rule runs an image, and the names the kubelet reports.

A rule's `image` is a repository pattern compared without tag or digest; it matches the
repository or any of its trailing parts, so `arks/engine-sim` matches
`arks/engine-sim:dev`, `docker.io/arks/engine-sim` and `registry:5000/arks/engine-sim@sha256:..`
(`*` matches anything: `nvcr.io/nvidia/ai-dynamo/*`). The first matching rule wins; no
match means the image cannot be pulled. Nothing is downloaded: image IDs are derived
from the reference so they stay stable.
"""

from __future__ import annotations

import fnmatch
import hashlib
import shutil
import sys
from pathlib import Path

from arks_devcluster.kubelet.config import ImageRule


def split(image: str) -> tuple[str, str | None]:
    """(repository, tag) of a reference; the digest is dropped."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, None


def rule_for(rules: tuple[ImageRule, ...], image: str) -> ImageRule | None:
    repository, _ = split(image)
    parts = repository.split("/")
    suffixes = ["/".join(parts[i:]) for i in range(len(parts))]
    for rule in rules:
        if any(fnmatch.fnmatchcase(s, rule.image) for s in suffixes):
            return rule
    return None


def qualified(image: str) -> str:
    """The fully qualified reference a container runtime reports
    (`nginx` is `docker.io/library/nginx:latest`)."""
    repository, tag = split(image)
    first = repository.split("/", 1)[0]
    if "/" not in repository:
        repository = f"docker.io/library/{repository}"
    elif not ("." in first or ":" in first or first == "localhost"):
        repository = f"docker.io/{repository}"
    if "@" in image:
        return f"{repository}@{image.split('@', 1)[1]}"
    return f"{repository}:{tag or 'latest'}"


def image_id(image: str) -> str:
    repository = qualified(image).rsplit(":", 1)[0].split("@", 1)[0]
    digest = hashlib.sha256(qualified(image).encode()).hexdigest()
    return f"{repository}@sha256:{digest}"


def pull_policy(container: dict[str, object]) -> str:
    """imagePullPolicy, defaulted as the API server does (Always for `latest` or no tag)."""
    policy = container.get("imagePullPolicy")
    if isinstance(policy, str) and policy:
        return policy
    image = str(container.get("image") or "")
    _, tag = split(image)
    return "Always" if tag in (None, "latest") and "@" not in image else "IfNotPresent"


def executable(name: str, path: str) -> str | None:
    """A bare command name resolved as the kubelet's images are: next to this Python
    (the workspace's console scripts) first, then on `path`; a path is taken as is."""
    if "/" in name:
        return name if Path(name).exists() else None
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    return shutil.which(name, path=path)
