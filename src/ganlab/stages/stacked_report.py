"""Stage `stacked_report` (opt-in, stacked/dvc.yaml): metrics/stacked_report.md, the Stacked
MNIST table of every stacked.variants entry beside PacGAN's quoted rows, and the floor.

Reads metrics/stacked/floor.json and metrics/stacked/<V>.json (the other stacked stages'
outputs) and data/prepared/meta.json (how many digits the stacks were drawn from).
"""

from __future__ import annotations

from pathlib import Path

from ganlab.config.params import Params
from ganlab.report.stacked import stacked_section
from ganlab.runtime.paths import PREPARED_DIR
from ganlab.util import read_json, write_text

STACKED_DIR = Path("metrics/stacked")
REPORT_PATH = Path("metrics/stacked_report.md")


def run_stacked_report(params: Params, echo=print, out: Path = REPORT_PATH) -> Path:
    # every file is read (and a missing or torn one named) before anything is written
    rows = {v: read_json(STACKED_DIR / f"{v}.json", f"ganlab stacked {v}",
                         keys=("modes_mean", "modes_sd", "kl_mean", "kl_sd", "n_seeds", "d_ratio",
                               "pack", "loss"))
            for v in params.stacked.variants}
    floor = read_json(STACKED_DIR / "floor.json", "ganlab stacked-floor",
                      keys=("modes_covered", "kl_uniform"))
    meta = read_json(PREPARED_DIR / "meta.json", "ganlab prepare", keys=("n_train",))
    lines = stacked_section(rows, floor, int(meta["n_train"]))
    write_text(out, "\n".join(lines))
    echo(f"stacked report: {out} ({len(rows)} variants)")
    return out
