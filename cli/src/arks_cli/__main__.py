"""Entry point of the `arks` console script.

Parses the command line, runs the subcommand and turns user errors (`CliError`) into
`error: ...` lines on stderr and a non-zero exit code, without a traceback. Ctrl-C
during a short command exits with 130.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from arks_cli.arguments import build_parser
from arks_cli.commanding import run_command
from arks_cli.errors import CliError


def main(argv: Sequence[str] | None = None) -> int:
    # Library warnings (a NATS reconnect, ...) are not for the person at the terminal:
    # commands report what matters themselves.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr if args.command else sys.stdout)
        return 2 if args.command else 0
    try:
        return run_command(args)
    except CliError as exc:
        for line in exc.message.splitlines() or [""]:
            sys.stderr.write(f"error: {line}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
