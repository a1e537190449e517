"""Runs the benchmarks and writes `bench/results/<name>.json` plus `bench/results/summary.md`.

python -m bench            # every bench/b_*.py
python -m bench router     # only bench/b_router.py
python -m bench --quick    # smaller loads, for a smoke run
python -m bench kube_scale --apps 5 --endpoints 2   # options of one benchmark
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, BenchContext


def _discover() -> list[str]:
    here = Path(__file__).parent
    return sorted(p.stem[2:] for p in here.glob("b_*.py"))


def _summary_line(name: str, result: dict[str, Any]) -> str:
    verdict = result.get("verdict", "")
    headline = result.get("headline", "")
    return f"| {name} | {headline} | {verdict} |"


async def _run_one(name: str, quick: bool, extra: list[str]) -> dict[str, Any]:
    module = importlib.import_module(f"bench.b_{name}")
    with tempfile.TemporaryDirectory(prefix=f"arks-bench-{name}-") as tmp:
        ctx = BenchContext(name=name, workdir=Path(tmp), quick=quick)
        started = time.time()
        # Options after the name go to that benchmark's run(ctx, argv) (kube_scale).
        result: dict[str, Any] = await (module.run(ctx, extra) if extra else module.run(ctx))
        result.setdefault("notes", ctx.notes)
        result["elapsed_s"] = round(time.time() - started, 1)
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*", help=f"benchmarks (default: all of {_discover()})")
    parser.add_argument("--quick", action="store_true", help="smaller loads for a smoke run")
    args, extra = parser.parse_known_args(argv)
    names = args.names or _discover()
    if extra and len(names) != 1:
        parser.error(f"options {extra} need exactly one benchmark name")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    rows = ["| benchmark | figure vs baseline | verdict |", "|---|---|---|"]
    failed = False
    for name in names:
        print(f"== bench {name}", flush=True)
        try:
            result = asyncio.run(_run_one(name, args.quick, extra))
        except Exception:
            traceback.print_exc()
            result = {"verdict": "ERROR", "headline": "benchmark raised; see output"}
            failed = True
        if result.get("targets_missed"):  # a benchmark that exits nonzero on a missed target
            failed = True
        (RESULTS_DIR / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        rows.append(_summary_line(name, result))
        print(json.dumps(result, indent=2, default=str), flush=True)
    summary = "\n".join(rows) + "\n"
    (RESULTS_DIR / "summary.md").write_text(summary)
    print(summary)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
