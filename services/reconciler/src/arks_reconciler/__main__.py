"""`arks-reconciler`: the control plane process. Configured by ARKS_* environment variables.

    ARKS_NATS__URL=nats://127.0.0.1:4222 ARKS_LOCAL__DATA_DIR=.arks arks-reconciler

See docs/reconciler.md for every setting.
"""

from __future__ import annotations

import sys

from arks_common.runtime import run_service
from arks_reconciler.service import lifespan
from arks_reconciler.settings import ReconcilerSettings


def main() -> None:
    if any(arg in ("-h", "--help") for arg in sys.argv[1:]):
        sys.stdout.write(__doc__ or "")
        return
    run_service("arks-reconciler", ReconcilerSettings(), lifespan)


if __name__ == "__main__":
    main()
