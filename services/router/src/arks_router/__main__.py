"""`arks-router`: the OpenAI-compatible gateway (settings from ARKS_* env vars)."""

from __future__ import annotations

from arks_common.runtime import run_service
from arks_router.app import lifespan
from arks_router.settings import RouterSettings


def main() -> None:
    run_service("arks-router", RouterSettings(), lifespan)


if __name__ == "__main__":
    main()
