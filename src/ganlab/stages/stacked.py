"""Stage `stacked@V` (opt-in: stacked/dvc.yaml): Stacked MNIST mode coverage of variant V.

Trains `stacked.variants.V` for every `stacked.seeds` (ganlab.stacked.train), draws
`stacked.n_samples` stacks from each run's generator, lets the judge label every channel and
writes metrics/stacked/V.json (mean and standard deviation over seeds, and each seed's
numbers) and, under metrics/stacked/V/, each seed's label triples and first 64 stacks
(seed<k>.npz, the evidence), its training curves (seed<k>.csv) and the wall times
(timing.json: outside the metrics file, so the same params give the same metrics bytes).
The floor is stage `stacked_floor` (ganlab.stages.stacked_floor).
"""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path

import numpy as np

from ganlab.config.params import Params
from ganlab.metrics.stacked import score_triples
from ganlab.runtime.paths import JUDGE_PATH, PREPARED_DIR
from ganlab.util import atomic_path, derive_seed, resolve_device, write_json

STACKED_DIR = Path("metrics/stacked")
N_KEPT_STACKS = 64  # generated stacks kept beside the triples, as pictures of the result


def _write_rows(path: Path, rows: list[dict[str, float]]) -> None:
    first = ["step", "epoch"]
    keys = first + sorted({k for r in rows for k in r} - set(first))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())


def _mean_sd(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def train_and_score(params: Params, variant: str, seed: int, data_dir: Path = PREPARED_DIR,
                    threads: int = 0) -> dict:
    """One (variant, seed): train, draw stacked.n_samples stacks, judge every channel. Its
    label triples, first stacks (uint8), training rows and wall / CPU seconds. `threads` > 0
    sets torch's intra-op threads first (a worker process)."""
    import torch

    from ganlab.nets.judge import load_judge
    from ganlab.stacked.data import load_digits
    from ganlab.stacked.score import label_batches
    from ganlab.stacked.train import generate_stacks, stacked_params, train_stacked

    if threads > 0:
        torch.set_num_threads(threads)
        torch.set_flush_denormal(True)
    n_samples, batch = params.stacked.n_samples, params.stacked.score_batch
    _, sv = stacked_params(params, variant, seed)
    device = resolve_device(params.device)
    judge = load_judge(JUDGE_PATH, device=device)
    _, digits = load_digits(data_dir)
    t0, c0 = time.perf_counter(), time.process_time()
    trainer, rows = train_stacked(params, variant, seed, digits, device)
    t1, c1 = time.perf_counter(), time.process_time()
    gen = torch.Generator().manual_seed(derive_seed(seed, variant, "stacked-eval"))
    labels, first = label_batches(
        judge, generate_stacks(trainer.stack_sampler(), n_samples, sv.train.latent_dim, gen, batch,
                               device), device, keep=N_KEPT_STACKS)
    t2, c2 = time.perf_counter(), time.process_time()
    kept = ((first + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    # wall and CPU seconds (this process's, all threads): on a shared machine the wall time
    # measures the load as much as the run
    timing = {"train_seconds": round(t1 - t0, 2), "score_seconds": round(t2 - t1, 2),
              "train_cpu_seconds": round(c1 - c0, 2), "score_cpu_seconds": round(c2 - c1, 2),
              "torch_threads": torch.get_num_threads()}
    return {"seed": seed, "labels": labels, "stacks": kept, "rows": rows, "timing": timing}


def _train_and_score_task(args: tuple) -> dict:
    return train_and_score(*args)


def run_stacked(params: Params, variant: str, data_dir: Path = PREPARED_DIR, echo=print,
                out_dir: Path = STACKED_DIR) -> dict:
    """Every stacked.seeds of `variant`, `stacked.workers` at a time (spawned processes of one
    torch thread each; in this process with 1), then the files."""
    from ganlab.stacked.data import save_npz
    from ganlab.stacked.train import stacked_params

    seeds, n_samples = params.stacked.seeds, params.stacked.n_samples
    workers = min(params.stacked.workers, len(seeds))
    _, sv = stacked_params(params, variant, seeds[0])  # an unknown variant fails here
    g_steps = sv.steps(params.stacked.g_steps)
    t0 = time.perf_counter()
    if workers <= 1:
        results = [train_and_score(params, variant, seed, data_dir) for seed in seeds]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        tasks = [(params, variant, seed, data_dir, 1) for seed in seeds]
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_train_and_score_task, tasks))
    wall = time.perf_counter() - t0
    target = out_dir / variant
    per_seed, timing = [], {"workers": workers, "stage_seconds": round(wall, 2)}
    for r in results:
        seed, rows, t = r["seed"], r["rows"], r["timing"]
        scores = score_triples(r["labels"])
        save_npz(target / f"seed{seed}.npz", labels=r["labels"], stacks=r["stacks"])
        _write_rows(target / f"seed{seed}.csv", rows)
        finite = all(math.isfinite(v) for row in rows for v in row.values())
        per_seed.append({"seed": seed, **scores, "g_steps": g_steps, "finite_losses": finite})
        timing[f"seed{seed}"] = t
        echo(f"stacked {variant} seed {seed}: {scores['modes_covered']}/1000 modes, KL "
             f"{scores['kl_uniform']:.3f} (train {t['train_seconds']:.1f} s wall / "
             f"{t['train_cpu_seconds']:.1f} s CPU, score {t['score_seconds']:.1f} s / "
             f"{t['score_cpu_seconds']:.1f} s)")
    summary: dict = {"variant": variant, "pack": sv.pack, "d_ratio": sv.d_ratio,
                     "g_width": sv.train.width, "d_width": sv.d_width, "loss": sv.train.loss,
                     "r1": sv.train.r1, "r2": sv.train.r2, "g_steps": g_steps,
                     "lr": sv.train.lr, "betas": list(sv.train.betas), "ema": sv.train.ema,
                     "batch_size": sv.train.batch_size,
                     "n_samples": n_samples, "n_seeds": len(seeds), "seeds": per_seed}
    for short, key in (("modes", "modes_covered"), ("kl", "kl_uniform")):
        summary[f"{short}_mean"], summary[f"{short}_sd"] = _mean_sd([s[key] for s in per_seed])
    write_json(target / "timing.json", timing)
    write_json(out_dir / f"{variant}.json", summary)
    echo(f"stacked {variant}: {summary['modes_mean']:.1f} ± {summary['modes_sd']:.1f} modes, KL "
         f"{summary['kl_mean']:.3f} ± {summary['kl_sd']:.3f} over {len(seeds)} seed(s) in {wall:.1f} s "
         f"({workers} worker(s))")
    return summary
