"""Smoke test of bench/run.py: the quick mode runs end to end and every measurement in its
JSON is a positive number. Speeds are deliberately not asserted: they depend on the machine
and on whatever else it is running, so only the plumbing is under test here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TRAIN_KEYS = (
    "ganlab_img_s", "baseline_img_s", "speedup", "flops_per_image_ganlab",
    "flops_per_image_baseline", "ganlab_gflops", "baseline_gflops", "ganlab_pct_peak",
    "baseline_pct_peak",
)
EVAL_KEYS = ("features_s", "metrics_s", "total_s", "peak_rss_mb")


def _positive(value) -> bool:
    return isinstance(value, int | float) and value > 0


@pytest.mark.slow
def test_bench_quick_writes_positive_measurements(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # The timeout only guards against a hang; it is not a speed assertion.
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--threads", "1",
         "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())

    assert _positive(res["peak"]["gflops"])

    names = {r["name"] for r in res["training"]}
    assert names == {"mlp_b64", "mlp_b256", "wgan_gp", "dcgan_b64"}
    for row in res["training"]:
        for key in TRAIN_KEYS:
            assert _positive(row[key]), (row["name"], key, row[key])

    for key in EVAL_KEYS:
        assert _positive(res["eval"][key]), (key, res["eval"][key])

    scaling = res["scaling"]
    for sweep in ("train_vs_images", "train_vs_epochs"):
        assert len(scaling[sweep]) >= 2
        for row in scaling[sweep]:
            for key in ("seconds", "img_s", "peak_rss_mb"):
                assert _positive(row[key]), (sweep, key, row)
    assert len(scaling["eval_vs_samples"]) >= 2
    for row in scaling["eval_vs_samples"]:
        for key in EVAL_KEYS:
            assert _positive(row[key]), ("eval_vs_samples", key, row)

    # The table is printed as well as saved.
    assert "speed-up" in proc.stdout and "% peak" in proc.stdout


def test_stage_cost_splits_wall_time_into_fixed_cost_and_work(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    from stage_cost import fixed_and_slope

    # a stage of 5 s fixed cost and 0.5 s per epoch, timed at 8 and 24 epochs
    fixed, slope = fixed_and_slope(8, 9.0, 24, 17.0)
    assert (fixed, slope) == pytest.approx((5.0, 0.5))
    with pytest.raises(ValueError):
        fixed_and_slope(8, 9.0, 8, 10.0)
