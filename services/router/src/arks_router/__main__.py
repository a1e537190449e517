"""`arks-router`: the OpenAI-compatible gateway (settings from ARKS_* env vars)."""

from __future__ import annotations

import contextlib
import resource

from arks_common.runtime import run_service
from arks_router.app import lifespan
from arks_router.settings import RouterSettings


def raise_open_files_limit() -> None:
    """Every streaming request holds two sockets (client and engine): lift the soft
    limit on open files to the hard one, as proxies do, so 1,000+ concurrent streams
    do not hit a default soft limit of 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    raise_open_files_limit()
    run_service("arks-router", RouterSettings(), lifespan)


if __name__ == "__main__":
    main()
