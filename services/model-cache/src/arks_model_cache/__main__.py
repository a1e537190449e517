"""Entry point of the `arks-model-cache` console script (see `arks_model_cache.cli`)."""

from __future__ import annotations

import sys

from arks_model_cache.cli import main as _main


def main() -> None:
    sys.exit(_main())


if __name__ == "__main__":
    main()
