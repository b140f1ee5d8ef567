"""Seconds a `train` stage spends logging and registering its generator as an MLflow model.

Reports wall and CPU seconds (the process's own; on a busy machine the wall time is several
times the CPU time). Each measurement is a fresh process, as under `dvc repro` (one process
per stage): torch and mlflow are imported and the store opened first (a training pays those
anyway); the timed part is `ganlab.tracking.models.log_model` of G alone, as the unconditional
kind's `log_models` calls it (torch.export import + trace, MLmodel files, logged model,
registry version). Default params' generators, an empty store.

    OMP_NUM_THREADS=1 .venv/bin/python bench/mlflow_model_log.py [--reps 3] [--variants gan,dcgan]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, sys, time
from pathlib import Path
import torch, yaml
torch.set_num_threads(1)
from ganlab.config.params import parse_params
from ganlab.nets.build import build_gan
from ganlab.tracking import models, runs

params = parse_params(yaml.safe_load(Path(sys.argv[1]).read_text()))
variant = sys.argv[2]
p = params.variant(variant)
g, _ = build_gan(p, (1, 28, 28))
run_id = runs.start_run(variant, {}, runs.run_tags(variant, "-", p))
meta = {"kind": "unconditional", "variant": variant, "latent_dim": p.latent_dim}
t0, c0 = time.perf_counter(), time.process_time()
out = models.log_model(run_id, g, models.ARTIFACT, models.registered_name(variant),
                       models.signature(p.latent_dim, (1, 28, 28)),
                       models.example_latents(2, p.latent_dim), meta, None)
print(json.dumps({"variant": variant, "seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--variants", default="gan,dcgan")
    args = ap.parse_args()
    results: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "dvc.yaml").write_text("stages: {}\n")
        env = {**__import__("os").environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
               "PYTHONPATH": str(REPO / "src")}
        for _ in range(args.reps):
            for v in args.variants.split(","):
                out = subprocess.run([sys.executable, "-c", CHILD, str(REPO / "params.yaml"), v], cwd=tmp,
                                     env=env, capture_output=True, text=True, check=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                results.setdefault(v, []).append(row["seconds"])
                cpu.setdefault(v, []).append(row["cpu"])
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    for v, xs in results.items():
        # CPU seconds of the process: what the wall time approaches on an idle machine
        print(f"{v}: log_model + register {statistics.median(xs):.2f} s wall, "
              f"{statistics.median(cpu[v]):.2f} s CPU (medians of {len(xs)}; load average {load})")


if __name__ == "__main__":
    main()
