"""Where conformance tests find the shared reference material.

Upstream Arks' CRDs and quickstart, its behaviour spec and OpenAI's OpenAPI description
are not part of this repository: they sit beside the clone at `<repo>/../shared` (CI lays
them there), or wherever `ARKS_SHARED_DIR` points. `make test` never reads them, so a bare
clone passes; the tests that compare against them are marked `conformance` and run by
`make conformance`, which fails loudly — never skips — when the material is missing.

A test marks itself by requesting the `shared_reference` fixture (directly or through
another fixture, e.g. the engine simulator's `openai_schemas`), or with
`@pytest.mark.conformance` when it reads the material through `shared_path()`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ENV = "ARKS_SHARED_DIR"
MARKER = "conformance"
FIXTURE = "shared_reference"
REPO = Path(__file__).resolve().parents[5]


def shared_dir() -> Path:
    """The reference material's directory (it may not exist)."""
    configured = os.environ.get(ENV)
    return Path(configured) if configured else REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A file or directory of the reference material; fails the test when it is missing."""
    path = shared_dir().joinpath(*parts)
    if not path.exists():
        pytest.fail(
            f"{path} is missing: conformance tests need the shared reference material "
            f"beside the clone (expected {shared_dir()}, or set {ENV})"
        )
    return path
