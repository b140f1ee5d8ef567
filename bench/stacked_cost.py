"""`bench/run.py --only stacked`: what the opt-in Stacked MNIST comparison costs, and how its
seeds are scheduled (issue 22: one variant x one seed <= 5 minutes on 2 cores, every variant x
its seeds <= 45 minutes).

Three measurements, in one run, on params.yaml's `stacked:` settings:

1. Per variant, ms per G step in this process at 1 torch thread and at all threads (after a
   warm-up), and what that makes one run of the variant's own G steps.
2. Scoring: G's stacks generated and judged (three channels each), seconds per 26,000 stacks
   (the protocol's N), at 1 thread and at all threads.
3. The seed schedule: the seeds of one variant at reduced G steps and samples, run exactly as
   `ganlab stacked` runs them (spawned one-thread workers), with `stacked.workers` = the number
   of cores (whole rounds: with 3 seeds on 2 cores the last round leaves a core idle) against
   workers = the number of seeds (all at once, sharing the cores); the wall ratio. The thread
   count per seed is 1 either way, so both give the same numbers (checked here).

Needs the prepared digits and the judge: `dvc repro judge` first.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path

import torch
import yaml
from common import REPO, fmt, print_table

SCHEDULE_VARIANT = "rpgan_r1r2"


def _params(root: Path):
    from ganlab.config.params import parse_params

    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["device"] = "cpu"
    return parse_params(raw)


def _step_ms(params, variant: str, digits, steps: int, warm: int, threads: int) -> float:
    from ganlab.kinds.base import TrainState
    from ganlab.stacked.train import StackedTrainer, stacked_params

    torch.set_num_threads(threads)
    run_params, sv = stacked_params(params, variant, 0)
    tr = StackedTrainer(run_params, variant, sv, digits, torch.device("cpu"))
    tr.steps_per_epoch = tr.total_d_steps = warm * tr.p.n_critic
    tr.run_epoch(TrainState())
    tr.steps_per_epoch = tr.total_d_steps = steps * tr.p.n_critic
    t0 = time.perf_counter()
    tr.run_epoch(TrainState())
    return 1e3 * (time.perf_counter() - t0) / steps


def _score_s_per_26k(params, variant: str, n: int, threads: int, root: Path) -> float:
    from ganlab.nets.dcgan import DCGenerator
    from ganlab.nets.judge import load_judge
    from ganlab.runtime.paths import JUDGE_PATH
    from ganlab.stacked.score import label_batches
    from ganlab.stacked.train import generate_stacks, stacked_params

    torch.set_num_threads(threads)
    _, sv = stacked_params(params, variant, 0)
    judge = load_judge(root / JUDGE_PATH, device=torch.device("cpu"))
    g = DCGenerator(sv.train.latent_dim, (3, 28, 28), sv.train.width)  # untrained: same cost
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    label_batches(judge, generate_stacks(g, n, sv.train.latent_dim, gen, params.stacked.score_batch,
                                         torch.device("cpu")))
    return (time.perf_counter() - t0) * 26000 / n


def _schedule(params, variant: str, workers: int, g_steps: int, n_samples: int,
              root: Path) -> tuple[float, list]:
    from ganlab.stages.stacked import run_stacked

    sv = dataclasses.replace(params.stacked.variants[variant], g_steps=g_steps)
    stacked = dataclasses.replace(params.stacked, workers=workers, n_samples=n_samples,
                                  variants={variant: sv})
    p = dataclasses.replace(params, stacked=stacked)
    with tempfile.TemporaryDirectory(prefix="ganlab-bench-stacked-") as tmp:
        t0 = time.perf_counter()
        s = run_stacked(p, variant, data_dir=root / "data/prepared", echo=lambda *_: None,
                        out_dir=Path(tmp))
        wall = time.perf_counter() - t0
    return wall, [(x["modes_covered"], round(x["kl_uniform"], 6)) for x in s["seeds"]]


def bench_stacked(quick: bool = False, root: Path = REPO, params=None, log=print) -> dict:
    """The three measurements on `root`'s prepared digits and judge, with `params` (default:
    root's params.yaml on the CPU)."""
    from ganlab.stacked.data import load_digits

    for need in ("data/prepared/train.npz", "models/judge/judge.pt"):
        if not (root / need).exists():
            raise SystemExit(f"bench stacked: {root / need} is missing; run `dvc repro judge` first")
    params = params or _params(root)
    cores = len(os.sched_getaffinity(0))
    _, digits = load_digits(root / "data/prepared")
    steps, warm = (4, 2) if quick else (30, 5)
    rows = []
    old_cwd = os.getcwd()
    os.chdir(root)  # the stage code reads models/judge relative to the project root
    try:
        for v, sv in params.stacked.variants.items():
            one = _step_ms(params, v, digits, steps, warm, 1)
            alln = _step_ms(params, v, digits, steps, warm, cores)
            g_steps = sv.steps(params.stacked.g_steps)
            rows.append({"variant": v, "g_width": sv.train.width, "d_width": sv.d_width,
                         "pack": sv.pack, "g_steps": g_steps, "ms_step_1t": one,
                         f"ms_step_{cores}t": alln, "train_s_1t": one * g_steps / 1e3,
                         f"train_s_{cores}t": alln * g_steps / 1e3})
            log(f"  {v}: {one:.1f} ms/step (1 thread), {alln:.1f} ({cores} threads)")
        n_score = 1000 if quick else 5200
        widths = sorted({r["g_width"] for r in rows})
        score = {}
        for w in widths:
            v = next(r["variant"] for r in rows if r["g_width"] == w)
            score[w] = {"s_26k_1t": _score_s_per_26k(params, v, n_score, 1, root),
                        f"s_26k_{cores}t": _score_s_per_26k(params, v, n_score, cores, root)}
        for r in rows:
            s = score[r["g_width"]]
            r["one_run_s_1t"] = r["train_s_1t"] + s["s_26k_1t"]
            r[f"one_run_s_{cores}t"] = r[f"train_s_{cores}t"] + s[f"s_26k_{cores}t"]
        torch.set_num_threads(cores)
        seeds = len(params.stacked.seeds)
        sched_v = SCHEDULE_VARIANT if SCHEDULE_VARIANT in params.stacked.variants else rows[0]["variant"]
        sched_steps, sched_n = (3, 200) if quick else (150, 5200)
        schedule = {}
        for w in sorted({min(cores, seeds), seeds}):
            wall, per_seed = _schedule(params, sched_v, w, sched_steps, sched_n, root)
            schedule[w] = {"wall_s": wall, "per_seed": per_seed}
            log(f"  schedule: {seeds} seeds of {sched_v} on {w} workers: {wall:.1f} s")
    finally:
        os.chdir(old_cwd)
    res = {"cores": cores, "steps_timed": steps, "variants": rows, "score": score,
           "schedule": {"variant": sched_v, "g_steps": sched_steps, "n_samples": sched_n,
                        "seeds": seeds, "by_workers": schedule}}
    ws = sorted(schedule)
    if len(ws) == 2:
        a, b = schedule[ws[0]], schedule[ws[1]]
        res["schedule"]["wall_ratio"] = a["wall_s"] / b["wall_s"]
        res["schedule"]["same_numbers"] = a["per_seed"] == b["per_seed"]
    cpu_1t = sum(r["one_run_s_1t"] for r in rows) * seeds
    res["comparison_cpu_s_1t"] = cpu_1t
    res["comparison_lower_bound_min"] = cpu_1t / cores / 60
    return res


def print_stacked(res: dict) -> None:
    c = res["cores"]
    rows = [[r["variant"], f"{r['g_width']}/{r['d_width']}", str(r["pack"]), f"{r['g_steps']:,}",
             fmt(r["ms_step_1t"], ".1f"), fmt(r[f"ms_step_{c}t"], ".1f"),
             fmt(r["one_run_s_1t"], ".0f"), fmt(r[f"one_run_s_{c}t"], ".0f")]
            for r in res["variants"]]
    print_table(f"stacked: one run per variant (train at its G steps + scoring 26,000 stacks), "
                f"ms per G step over {res['steps_timed']} steps",
                ["variant", "G/D width", "pack", "G steps", "ms/step 1t", f"ms/step {c}t",
                 "one run s 1t", f"one run s {c}t (<= 300)"], rows)
    srows = [[str(w), fmt(s["s_26k_1t"], ".1f"), fmt(s[f"s_26k_{c}t"], ".1f")]
             for w, s in res["score"].items()]
    print_table("stacked: scoring (generate + judge 3 channels), s per 26,000 stacks",
                ["G width", "1 thread", f"{c} threads"], srows)
    sc = res["schedule"]
    srows = [[str(w), fmt(x["wall_s"], ".1f"), str(x["per_seed"])] for w, x in sc["by_workers"].items()]
    print_table(f"stacked: schedule, {sc['seeds']} seeds of {sc['variant']} at {sc['g_steps']} G steps "
                f"and {sc['n_samples']:,} stacks, one-thread workers",
                ["workers", "wall s", "per seed (modes, KL)"], srows)
    if "wall_ratio" in sc:
        print(f"  workers {min(sc['by_workers'])} / {max(sc['by_workers'])} wall: "
              f"{sc['wall_ratio']:.2f}x; same numbers: {sc['same_numbers']}")
    print(f"  whole comparison: {res['comparison_cpu_s_1t']:.0f} one-thread CPU s, at best "
          f"{res['comparison_lower_bound_min']:.1f} min on {c} cores (target <= 45)")
