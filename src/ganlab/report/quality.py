"""The report's quality-vs-compute section: fid_judge against training seconds and FLOPs.

Reads metrics/quality/<V>.csv (the monitor's checks: G step, GFLOPs, fid_judge, precision,
recall) and the wall-clock seconds of each check from models/variants/<V>/timing.json,
so a reader compares losses at equal compute rather than at unequal final budgets.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ganlab.config.params import Params


def _checks(name: str) -> list[dict[str, float]]:
    path = Path("metrics/quality") / f"{name}.csv"
    if not path.exists():
        return []
    rows = [{k: float(v) if v != "" else float("nan") for k, v in r.items()}
            for r in csv.DictReader(path.open())]
    timing_path = Path("models/variants") / name / "timing.json"
    seconds = dict(map(tuple, json.loads(timing_path.read_text()).get("quality_seconds", [])))
    for r in rows:
        r["seconds"] = seconds.get(r["step"], float("nan"))
    return rows


def _plot(curves: dict[str, list[dict[str, float]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ganlab.util import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, rows in curves.items():
        for ax, x in zip(axes, ("seconds", "gflops")):
            ax.plot([r[x] for r in rows], [r["fid_judge"] for r in rows], marker=".", lw=1, label=name)
    for ax, label in zip(axes, ("training seconds (wall clock, this machine)", "training GFLOPs (counted)")):
        ax.set_xlabel(label)
        ax.set_ylabel("fid_judge (monitor, fixed noise)")
        ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def quality_section(params: Params, png: Path = Path("metrics/report_quality.png")) -> list[str]:
    curves = {name: rows for name in params.variants if (rows := _checks(name))}
    if not curves:
        return []
    _plot(curves, png)
    m = params.monitor
    lines = ["## Quality against compute", "",
             f"Every {m.every} epochs (and at the end) {m.n_samples} images from fixed noise are scored "
             f"against {m.n_samples} training images in the judge's feature space (fewer images than "
             "the evaluation above, so these FIDs sit higher). GFLOPs are counted with "
             "`torch.utils.flop_counter` (one G-step cycle × G steps); seconds are this machine's "
             "wall clock. Compare variants at equal compute, not at their different final budgets.", "",
             f"![fid vs compute]({png.name})", "",
             "| variant | checks | final G steps | GFLOPs | train s | fid_judge | precision | recall "
             "| best fid_judge (at GFLOPs) |", "|---|---|---|---|---|---|---|---|---|"]
    for name, rows in curves.items():
        last = rows[-1]
        finite = [r for r in rows if r["fid_judge"] == r["fid_judge"]]
        best = min(finite, key=lambda r: r["fid_judge"]) if finite else last
        lines.append(f"| {name} | {len(rows)} | {last['step']:.0f} | {last['gflops']:.1f} | "
                     f"{last['seconds']:.0f} | {last['fid_judge']:.1f} | {last['precision_judge']:.3f} | "
                     f"{last['recall_judge']:.3f} | {best['fid_judge']:.1f} ({best['gflops']:.1f}) |")
    lines.append("")
    return lines
