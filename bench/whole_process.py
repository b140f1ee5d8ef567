"""`bench/run.py --only whole`: the whole training process, ganlab against the tutorial script.

Side by side, each run a fresh process started as a user starts it, in a temporary copy of the
project (common.copy_project) after `ganlab prepare` there:

- tutorial: `python bench/tutorial_gan.py --data data/prepared/train.npz --epochs E` (the
  PyTorch-GAN MLP GAN of seed document 000, written for the bench; see that file);
- ganlab: `ganlab train gan` with `variants.gan.epochs: E`, everything else as params.yaml
  sets it (EMA, diagnostics, progress grids, MLflow logging, the quality monitor's snapshots
  every `monitor.every` epochs, the model logged at the end); and once more with the monitor
  off (`monitor.every: 0`).

Each side runs once untimed at E1 (bytecode of the copy's src, the MLflow experiment, the page
cache), then at two epoch counts, E1 < E2 (default 1 and 9), the sides alternating, best wall
time of `reps` runs each (run.py: 2, 1 with --quick). Then

    per epoch = (t(E2) - t(E1)) / (E2 - E1)     (the start-up and the once-per-run work cancel)
    start-up  = t(E1) - E1 x per epoch          (imports, data, set-up, final writes)
    images/s  = n_train / per-epoch seconds

Last, one more ganlab run at params.yaml's epochs for the variant (the default run's training;
`overhead_epochs` instead, E2 with --quick) gives the share of its epoch loop spent outside the
steps, by the train stage's own clocks in timing.json: the trainer's epochs, the monitor's
checks, and the rest (progress grids, MLflow rows and images, checkpoints).

With monitor.every 8, 9 epochs hold two checks (epoch 8 and the last) and 1 epoch one, so the
per-epoch figure carries one check per 8 epochs, the default 32-epoch run's rate.
`monitor.collapse_patience` is set to 1 in every run: params validation refuses a patience
longer than the run's number of checks, and the patience changes no work.

All processes get the same thread count: OMP/MKL/OpenBLAS threads in the environment (as
run.py's child processes), and `--threads` for the tutorial script.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml
from common import copy_project, fmt, print_table, project_command_env

VARIANT = "gan"
TUTORIAL = Path(__file__).resolve().parent / "tutorial_gan.py"
SIDES = ("tutorial", "ganlab", "ganlab, monitor off")


def per_epoch_split(e1: int, t1: float, e2: int, t2: float) -> tuple[float, float]:
    """(seconds per epoch, start-up seconds) from two wall times at e1 < e2 epochs."""
    if e2 <= e1:
        raise ValueError(f"need two epoch counts e1 < e2, got {e1}, {e2}")
    per_epoch = (t2 - t1) / (e2 - e1)
    return per_epoch, t1 - e1 * per_epoch


def bench_whole(threads: int, epochs: tuple[int, int] = (1, 9), monitor_off: bool = True,
                reps: int = 1, log: Callable[[str], None] = print,
                overhead_epochs: int | None = None) -> dict:
    e1, e2 = epochs
    per_epoch_split(e1, 0.0, e2, 1.0)  # refuse a bad pair before any work
    tmp = Path(tempfile.mkdtemp(prefix="ganlab-whole-"))
    try:
        copy_project(tmp)
        n = str(threads)
        ganlab, env = project_command_env(tmp)
        env.update(OMP_NUM_THREADS=n, MKL_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n)
        # a user's Python caches bytecode: the warm-up runs write the copy's, later runs read it
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        base = yaml.safe_load((tmp / "params.yaml").read_text())
        base["monitor"]["collapse_patience"] = 1

        def run(args: list[str], raw: dict) -> tuple[float, str]:
            (tmp / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
            t0 = time.perf_counter()
            proc = subprocess.run(args, cwd=tmp, env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - t0
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(args)} failed:\n{(proc.stderr or proc.stdout)[-2000:]}")
            return seconds, proc.stdout

        prepare_s, _ = run([ganlab, "prepare"], base)
        data = tmp / "data" / "prepared" / "train.npz"
        with np.load(data) as z:
            n_train = len(z["images"])
        log(f"  prepare: {prepare_s:.1f}s ({n_train} training images)")

        def tutorial(e: int) -> dict:
            wall, out = run([sys.executable, str(TUTORIAL), "--data", str(data), "--epochs", str(e),
                             "--threads", n, "--out_dir", str(tmp / "tutorial_images")], base)
            m = re.search(r"TUTORIAL_TIMES setup_s=(\S+) train_s=(\S+)", out)
            return {"wall_s": wall, "train_s": float(m.group(2)) if m else None}

        def ganlab_train(e: int, every: int | None) -> dict:
            raw = yaml.safe_load(yaml.safe_dump(base))
            raw["variants"][VARIANT]["epochs"] = e
            if every is not None:
                raw["monitor"]["every"] = every
            wall, _ = run([ganlab, "train", VARIANT], raw)
            timing = json.loads((tmp / "models" / "variants" / VARIANT / "timing.json").read_text())
            return {"wall_s": wall, "train_s": timing.get("train_seconds"), "timing": timing}

        sides: dict[str, Callable[[int], dict]] = {
            "tutorial": tutorial, "ganlab": lambda e: ganlab_train(e, None)}
        if monitor_off:
            sides["ganlab, monitor off"] = lambda e: ganlab_train(e, 0)
        # Untimed first runs: the copy's src has no bytecode yet, the MLflow store no `gan`
        # experiment, the page cache none of the files; whichever run came first would pay.
        for side, fn in sides.items():
            log(f"  {side}, {e1} epochs (warm-up): {fn(e1)['wall_s']:.1f}s wall")
        runs: dict[str, dict[int, dict]] = {side: {} for side in sides}
        for e in (e1, e2):
            for _ in range(reps):  # the sides alternate, so a slow spell hits each
                for side, fn in sides.items():
                    r = fn(e)
                    log(f"  {side}, {e} epochs: {r['wall_s']:.1f}s wall")
                    best = runs[side].get(e)
                    if best is None or r["wall_s"] < best["wall_s"]:
                        runs[side][e] = r
        rows = []
        for side in sides:
            t1, t2 = runs[side][e1]["wall_s"], runs[side][e2]["wall_s"]
            per_epoch, startup = per_epoch_split(e1, t1, e2, t2)
            inner = [runs[side][e1]["train_s"], runs[side][e2]["train_s"]]
            loop = per_epoch_split(e1, inner[0], e2, inner[1])[0] if None not in inner else None
            rows.append({"side": side, "epochs": [e1, e2], "wall_s": [t1, t2], "train_s": inner,
                         "per_epoch_s": per_epoch, "startup_s": startup, "loop_per_epoch_s": loop,
                         "img_s": n_train / per_epoch if per_epoch > 0 else None})
        tut = rows[0]["per_epoch_s"]
        for r in rows:
            r["per_epoch_vs_tutorial"] = r["per_epoch_s"] / tut if tut else None
        # the epoch loop of one run at params.yaml's own epochs (the default run's training),
        # split by the train stage's own clocks (timing.json): trainer epochs, monitor checks,
        # and the rest (progress grids, MLflow rows and images, checkpoints)
        default_epochs = overhead_epochs or base["variants"][VARIANT].get(
            "epochs", base["training"]["epochs"])
        t = ganlab_train(default_epochs, None)["timing"]
        loop, steps, mon = t["loop_seconds"], t["loop_train_seconds"], t["loop_monitor_seconds"]
        overhead = {"epochs": default_epochs, "loop_s": loop, "steps_s": steps, "monitor_s": mon,
                    "other_s": loop - steps - mon, "outside_share": (loop - steps) / loop,
                    "monitor_share": mon / loop, "other_share": (loop - steps - mon) / loop,
                    "progress_every": base["monitor"]["progress_every"],
                    "monitor_every": base["monitor"]["every"]}
        log(f"  ganlab, {default_epochs} epochs (params.yaml): loop {loop:.2f}s, steps {steps:.2f}s")
        return {"variant": VARIANT, "threads": threads, "n_train": n_train, "epochs": [e1, e2],
                "reps": reps, "prepare_s": prepare_s, "rows": rows, "overhead": overhead}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def print_whole(res: dict) -> None:
    e1, e2 = res["epochs"]
    print_table(f"whole process: fresh processes at {e1} and {e2} epochs ({res['n_train']} images, "
                f"{res['threads']} threads); per epoch = (t{e2} - t{e1}) / {e2 - e1}, "
                f"start-up = t{e1} - {e1} x per epoch",
                ["side", f"wall s ({e1} / {e2} ep)", "per-epoch s", "img/s", "start-up s",
                 "per epoch / tutorial", "loop s/epoch (own clock)"],
                [[r["side"], " / ".join(fmt(w, ".1f") for w in r["wall_s"]), fmt(r["per_epoch_s"], ".2f"),
                  fmt(r["img_s"], ".0f"), fmt(r["startup_s"], ".1f"),
                  fmt(r["per_epoch_vs_tutorial"], ".2f") + "x", fmt(r["loop_per_epoch_s"], ".2f")]
                 for r in res["rows"]])
    print("  loop s/epoch: the process's own clock around its epochs (the tutorial's whole loop; "
          "ganlab's timing.json train_seconds, trainer epochs only, without grids, MLflow, monitor)")
    o = res.get("overhead")
    if o:
        print_table(f"ganlab's epoch loop at params.yaml's {o['epochs']} epochs, by its own clocks "
                    f"(timing.json; monitor.every {o['monitor_every']}, progress_every "
                    f"{o['progress_every']})",
                    ["part", "s", "% of the loop"],
                    [["trainer epochs (the steps)", fmt(o["steps_s"], ".2f"),
                      fmt(100 * (1 - o["outside_share"]), ".1f")],
                     ["monitor checks", fmt(o["monitor_s"], ".2f"), fmt(100 * o["monitor_share"], ".1f")],
                     ["the rest (grids, MLflow, checkpoints)", fmt(o["other_s"], ".2f"),
                      fmt(100 * o["other_share"], ".1f")],
                     ["outside the steps", fmt(o["loop_s"] - o["steps_s"], ".2f"),
                      fmt(100 * o["outside_share"], ".1f")]])
