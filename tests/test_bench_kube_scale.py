"""`python -m bench kube_scale` at a tiny size, so the benchmark cannot rot: 5 sim
applications behind 2 endpoints on the dev cluster reach Running and are routed, the
requests are counted and the resync is watched; the baseline runs too. No timing or
request-count target is asserted here (benchmarks judge those, tests do not)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_kube_scale_runs_at_a_tiny_size(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))  # `python -m bench` runs from the repository root
    from bench.b_kube_scale import run
    from bench.common import BenchContext

    ctx = BenchContext(name="kube_scale", workdir=tmp_path)
    argv = ["--apps", "5", "--endpoints", "2", "--workers", "4", "--resync", "3"]
    result = await run(ctx, [*argv, "--timeout", "120"])

    reconciler = result["reconciler"]
    assert reconciler["running_s"] > 0
    assert reconciler["routed_s"] > 0
    kinds = reconciler["requests_by_kind"]
    assert kinds["PATCH leaderworkersets"] >= 5, kinds  # one LWS per application, at least
    assert kinds["PATCH services"] >= 5, kinds
    assert reconciler["requests_per_app"] == pytest.approx(reconciler["requests"] / 5, abs=0.01)
    # A steady cluster is not written on resync (the platform's own tests say so too).
    assert reconciler["resync_writes"] == 0, reconciler["resync_requests_by_kind"]
    assert reconciler["resync_route_kv_writes"] == 0
    baseline = result["baseline"]
    assert baseline["objects"] == 1 + 5 + 5  # the model's claim, 5 LWS, 5 Services
    assert result["verdict"] in ("pass", "FAIL")
    assert result["targets_missed"] is (result["verdict"] == "FAIL")
