"""`arks-engine-sim` / `python -m arks_engine_sim`: parse vLLM-style arguments, run one
simulator on uvloop until SIGTERM/SIGINT.

Exit codes: 0 after a graceful stop, 2 for invalid settings or a configuration that
cannot work (e.g. max_model_len larger than the KV cache), `fault_crash_exit_code` for an
injected crash. Unknown vLLM flags are logged as a warning and ignored.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import uvloop
from pydantic import ValidationError

from arks_engine_sim.arguments import parse_arguments
from arks_engine_sim.loading import ConfigError
from arks_engine_sim.serving import Simulator

log = logging.getLogger("arks_engine_sim")


async def _run(simulator: Simulator) -> int:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, simulator.request_stop)
    code = 0
    try:
        await simulator.run()
    except* ConfigError as group:
        for exc in group.exceptions:
            log.error("%s", exc)
        code = 2
    return code


async def _run_until_stopped(simulator: Simulator) -> int:
    try:
        return await _run(simulator)
    except asyncio.CancelledError:
        log.info("stopped while loading")
        return 0


def main(argv: list[str] | None = None) -> None:
    try:
        parsed = parse_arguments(sys.argv[1:] if argv is None else argv)
    except ValidationError as exc:
        sys.stderr.write(f"arks-engine-sim: invalid settings\n{exc}\n")
        sys.exit(2)
    settings = parsed.settings
    level = "DEBUG" if settings.uvicorn_log_level == "trace" else settings.uvicorn_log_level.upper()
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if parsed.ignored:
        log.warning("ignoring arguments the simulator does not model: %s", " ".join(parsed.ignored))
    try:
        simulator = Simulator(settings)
    except ConfigError as exc:
        log.error("%s", exc)
        sys.exit(2)
    sys.exit(uvloop.run(_run_until_stopped(simulator)))


if __name__ == "__main__":
    main()
