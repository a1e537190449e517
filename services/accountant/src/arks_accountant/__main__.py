"""`arks-accountant` / `python -m arks_accountant`: run the accountant until SIGTERM/SIGINT.

Exit code 2 for invalid settings (printed); otherwise the service runs until stopped.
"""

from __future__ import annotations

import sys

from pydantic import ValidationError

from arks_accountant.service import NAME, make_lifespan
from arks_accountant.settings import AccountantSettings
from arks_common.runtime import run_service


def main() -> None:
    try:
        settings = AccountantSettings()
    except ValidationError as exc:
        sys.stderr.write(f"{NAME}: invalid settings\n{exc}\n")
        sys.exit(2)
    run_service(NAME, settings, make_lifespan(settings))


if __name__ == "__main__":
    main()
