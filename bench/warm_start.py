"""`bench/run.py --only warm`: a stage command started cold against the warm launcher.

Under `dvc repro` the `ganlab` command hands itself to a server that imported torch and
MLflow once and forks the command (src/ganlab/launcher.py). This times the same commands
both ways, in a copy of the project, as DVC would run them (`ganlab <stage> gan`, a fresh
process each): GANLAB_WARM=0, each command imports for itself (the baseline), and
GANLAB_WARM=1, the command goes through the server. The first warm command starts the server
(it then runs cold itself) and is not timed. Each number is the fastest of `reps` runs; the
ratio is cold / warm.

Set up first: prepare, judge, floor, train gan (`epochs` epochs, a monitor check each), sample gan.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import yaml
from common import copy_project, fmt, print_table, project_command_env

VARIANT = "gan"
TIMED = (("evaluate", [VARIANT]), ("sample", [VARIANT]), ("floor", []))


def bench_warm(quick: bool = False, reps: int = 3, epochs: int = 2) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="ganlab-warm-"))
    reps = 1 if quick else reps
    try:
        copy_project(tmp)
        raw = yaml.safe_load((tmp / "params.yaml").read_text())
        raw["variants"][VARIANT]["epochs"] = epochs
        raw["monitor"]["every"] = raw["monitor"]["collapse_patience"] = 1  # checks that fit
        if quick:
            raw["sample"]["n_samples"] = raw["evaluate"]["n_samples"] = 200
        (tmp / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        ganlab, env = project_command_env(tmp)

        def run(args: list[str], warm: bool) -> float:
            t0 = time.perf_counter()
            proc = subprocess.run([ganlab, *args], cwd=tmp, capture_output=True, text=True,
                                  env={**env, "GANLAB_WARM": "1" if warm else "0"})
            seconds = time.perf_counter() - t0
            if proc.returncode != 0:
                raise RuntimeError(f"ganlab {' '.join(args)} failed:\n{(proc.stderr or proc.stdout)[-2000:]}")
            return seconds

        for stage in ("prepare", "judge", "floor", "train", "sample"):
            run([stage] if stage in ("prepare", "judge", "floor") else [stage, VARIANT], warm=False)
        start = run(["evaluate", VARIANT], warm=True)  # starts the server; ran cold itself
        rows = []
        for stage, args in TIMED:
            cold = min(run([stage, *args], warm=False) for _ in range(reps))
            warm = min(run([stage, *args], warm=True) for _ in range(reps))
            rows.append({"command": f"ganlab {' '.join([stage, *args])}", "cold_s": cold,
                         "warm_s": warm, "ratio": cold / warm, "saved_s": cold - warm})
        return {"rows": rows, "reps": reps, "first_warm_command_s": start}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def print_warm(res: dict) -> None:
    print_table("warm launcher: a stage command cold (GANLAB_WARM=0) vs through the server, "
                f"best of {res['reps']}",
                ["command", "cold s", "warm s", "cold / warm", "saved s"],
                [[r["command"], fmt(r["cold_s"], ".2f"), fmt(r["warm_s"], ".2f"), fmt(r["ratio"], ".2f"),
                  fmt(r["saved_s"], ".2f")] for r in res["rows"]])
