"""`bench/run.py --only stages`: each pipeline stage's fixed cost, apart from its work.

A stage's wall time is fixed cost (process start, imports, MLflow store, model logging,
loading the judge, writing files) plus work that grows with its size knob. Each stage command
runs as a user runs it (`ganlab <stage> [gan]`, a fresh process, in a copy of the repo) at two
sizes of its knob; the straight line through the two wall times gives

    fixed = intercept (the wall time at size 0),  work = slope x the size params.yaml sets.

Each point is the fastest of `reps` runs. The import rows are the floor under any fixed
cost: a Python that imports the CLI module, then torch, then mlflow, and exits.

The stages: train, sample, evaluate, toy, floor (the real-vs-real floor, its own stage apart
from judge training) and quality (scores the snapshots the train stage saved). Set up first,
at params.yaml's sizes: prepare, judge, floor, train gan, sample gan.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from common import copy_project, fmt, print_table, project_command_env

VARIANT = "gan"
# stage -> (params key, small, large, what one unit is), in the order they run (quality scores
# the snapshots of the default-budget training the train row leaves behind); the default size
# is read from params.yaml
KNOBS: dict[str, tuple[str, float, float, str]] = {
    "train": (f"variants.{VARIANT}.epochs", 8, 24, "epochs"),
    "sample": ("sample.n_samples", 500, 2000, "images"),
    "evaluate": ("evaluate.n_samples", 250, 1000, "images"),
    "toy": ("toy.g_steps", 600, 1800, "G steps"),
    # the floor scores N = min(evaluate.n_samples, sample.n_samples, held-out count) images
    "floor": ("evaluate.n_samples", 250, 1000, "images"),
    # fixed-noise images per snapshot, scored against as many training images
    "quality": ("monitor.n_samples", 250, 1000, "images per snapshot"),
}
# stages that take no variant argument
PROJECT_STAGES = {"prepare", "judge", "floor"}
IMPORTS = {
    "python + ganlab CLI": "import ganlab.cli",
    "+ torch": "import ganlab.cli, torch",
    "+ torch + mlflow": "import ganlab.cli, torch, mlflow",
}


def fixed_and_slope(x1: float, t1: float, x2: float, t2: float) -> tuple[float, float]:
    """Intercept and slope of the line through (x1, t1) and (x2, t2)."""
    if x1 == x2:
        raise ValueError("two different sizes are needed")
    slope = (t2 - t1) / (x2 - x1)
    return t1 - slope * x1, slope


def _set(raw: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = raw
    for key in parents:
        node = node[key]
    node[leaf] = value


def _get(raw: dict, dotted: str):
    node = raw
    for key in dotted.split("."):
        node = node[key]
    return node


def _default(raw: dict, dotted: str) -> float:
    """The knob's value in params.yaml (a variant's epochs come from `training:` when it states none)."""
    if dotted == f"variants.{VARIANT}.epochs":
        return float(raw["variants"][VARIANT].get("epochs", raw["training"]["epochs"]))
    return float(_get(raw, dotted))


def command(ganlab: str, stage: str) -> list[str]:
    """The command line that runs `stage` (on VARIANT where the stage takes one)."""
    return [ganlab, stage] if stage in PROJECT_STAGES else [ganlab, stage, VARIANT]


def bench_stage_cost(reps: int = 2, log: Callable[[str], None] = print) -> dict:
    """Time the stages in a fresh copy of the project (common.copy_project)."""
    tmp = Path(tempfile.mkdtemp(prefix="ganlab-stages-"))
    try:
        copy_project(tmp)
        ganlab, env = project_command_env(tmp)
        base = yaml.safe_load((tmp / "params.yaml").read_text())

        def run(args: list[str], raw: dict | None = None) -> float:
            (tmp / "params.yaml").write_text(yaml.safe_dump(raw or base, sort_keys=False))
            t0 = time.perf_counter()
            proc = subprocess.run(args, cwd=tmp, env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - t0
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(args)} failed:\n{(proc.stderr or proc.stdout)[-2000:]}")
            return seconds

        imports = {}
        for name, code in IMPORTS.items():
            imports[name] = min(run([sys.executable, "-c", code]) for _ in range(reps))
            log(f"  import {name}: {imports[name]:.2f}s")
        setup = {}
        for stage, label in (("prepare", "prepare"), ("judge", "judge"),
                             ("floor", "floor (default N)"),
                             ("train", f"train {VARIANT} (default budget)"),
                             ("sample", f"sample {VARIANT} (default size)")):
            setup[label] = run(command(ganlab, stage))
            log(f"  setup {label}: {setup[label]:.1f}s")
        floor_n = json.loads((tmp / "metrics" / "floor.json").read_text())["n_compared"]
        rows = []
        for stage, (key, small, large, unit) in KNOBS.items():
            walls = []
            for value in (small, large):
                raw = yaml.safe_load(yaml.safe_dump(base))
                _set(raw, key, value)
                # 8 epochs hold one monitor check: let the collapse detector's validation pass
                # (its patience changes no work); checks stay one per `monitor.every` epochs
                raw["monitor"]["collapse_patience"] = 1
                if stage == "evaluate":  # the real-vs-real floor must be scored at the same N
                    run(command(ganlab, "floor"), raw)
                walls.append(min(run(command(ganlab, stage), raw) for _ in range(reps)))
            if stage in ("train", "sample"):  # leave the default-size outputs for the next stages
                run(command(ganlab, stage))
            x1, x2, default = float(small), float(large), _default(base, key)
            if stage in ("evaluate", "floor"):  # both score min(n_samples, held-out count): N
                default = float(floor_n)
            fixed, slope = fixed_and_slope(x1, walls[0], x2, walls[1])
            rows.append({"stage": stage, "knob": key, "unit": unit, "sizes": [x1, x2],
                         "wall_s": walls, "fixed_s": fixed, "work_s_per_unit": slope,
                         "default_size": default, "work_s_at_default": slope * default})
            log(f"  {stage}: fixed {fixed:.2f}s, work {slope * default:.1f}s at {default:g} {unit}")
        return {"imports_s": imports, "setup_s": setup, "stages": rows, "reps": reps}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def print_stage_cost(res: dict) -> None:
    print_table(f"stage cost: fixed (intercept of wall time vs size) and work, `ganlab <stage> [{VARIANT}]`",
                ["stage", "knob", "sizes", "wall s", "fixed s", "work s at default"],
                [[r["stage"], r["knob"], " / ".join(f"{x:g}" for x in r["sizes"]),
                  " / ".join(fmt(w, ".2f") for w in r["wall_s"]), fmt(r["fixed_s"], ".2f"),
                  f"{fmt(r['work_s_at_default'], '.1f')} ({r['default_size']:g} {r['unit']})"]
                 for r in res["stages"]])
    print_table("import floor (fresh process, best of reps)", ["imports", "seconds"],
                [[k, fmt(v, ".2f")] for k, v in res["imports_s"].items()])
