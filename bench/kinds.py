#!/usr/bin/env python
"""Training time of the conditional and cycle variants of params.yaml, per epoch and projected
to their full budget, at a given thread count.

    OMP_NUM_THREADS=1 python bench/kinds.py --threads 1 [--epochs 2] [--variants cgan,cyclegan]

Runs from a project folder that holds data/prepared and data/uci (`ganlab prepare`,
`ganlab prepare-uci`). Times whole epochs (`Trainer.run_epoch`) after one warm-up epoch, so
the number excludes start-up and evaluation. On a machine that is busy with other work the
projection is an upper bound: measure there with 1 thread and read the ratio.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs (after one warm-up)")
    ap.add_argument("--variants", default="cgan,cyclegan")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)  # as `ganlab train` runs
    from ganlab.config.params import load_params
    from ganlab.kinds.base import TrainState
    from ganlab.kinds.training import build_trainer

    params = load_params(args.params)
    out = {}
    for name in args.variants.split(","):
        p = params.variant(name)
        trainer = build_trainer(params, name, Path("data/prepared"), torch.device("cpu"))
        state = TrainState()
        trainer.run_epoch(state)  # warm-up
        times, cpu = [], []
        for _ in range(args.epochs):
            t0, c0 = time.perf_counter(), time.process_time()
            trainer.run_epoch(state)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        per_epoch, cpu_epoch = min(times), min(cpu)
        # CPU seconds are what a busy machine distorts least (with 1 thread: about the wall
        # time the epoch takes alone on one core)
        out[name] = {"kind": p.kind, "threads": args.threads, "seconds_per_epoch": round(per_epoch, 2),
                     "cpu_seconds_per_epoch": round(cpu_epoch, 2), "epochs": p.epochs,
                     "projected_train_seconds": round(per_epoch * p.epochs, 1),
                     "projected_train_cpu_seconds": round(cpu_epoch * p.epochs, 1)}
        print(json.dumps({name: out[name]}))


if __name__ == "__main__":
    main()
