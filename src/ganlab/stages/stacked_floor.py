"""Stage `stacked_floor` (opt-in: stacked/dvc.yaml): Stacked MNIST's floor.

`stacked.n_floor` real stacks (three prepared training digits drawn independently) scored
exactly as a generator's are: the judge labels each channel. metrics/stacked/floor.json has
the modes covered and KL to uniform, the same with the digits' true labels (the sampling
floor alone, ~(1000 - 1) / (2 N)), and the judge's per-channel agreement with the true
labels; metrics/stacked/floor.npz keeps both label triples.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ganlab.config.params import Params
from ganlab.metrics.stacked import expected_floor_kl, score_triples
from ganlab.runtime.paths import JUDGE_PATH, PREPARED_DIR
from ganlab.util import derive_seed, resolve_device, write_json

STACKED_DIR = Path("metrics/stacked")


def run_stacked_floor(params: Params, data_dir: Path = PREPARED_DIR, echo=print) -> dict:
    import torch

    from ganlab.nets.judge import load_judge
    from ganlab.stacked.data import draw_stacks, load_digits, save_npz
    from ganlab.stacked.score import channel_labels

    n, batch = params.stacked.n_floor, params.stacked.score_batch
    device = resolve_device(params.device)
    judge = load_judge(JUDGE_PATH, device=device)
    split, digits = load_digits(data_dir)
    gen = torch.Generator().manual_seed(derive_seed(params.seed, "stacked-floor"))
    judged, true = [], []
    t0 = time.perf_counter()
    for lo in range(0, n, batch):
        stacks, idx = draw_stacks(digits, min(batch, n - lo), gen)
        judged.append(channel_labels(judge, stacks, device))
        true.append(split.labels[idx.numpy()].astype(np.uint8))
    judged_a, true_a = np.concatenate(judged), np.concatenate(true)
    js, ts = score_triples(judged_a), score_triples(true_a)
    out = {**js, "true_labels.modes_covered": ts["modes_covered"],
           "true_labels.kl_uniform": ts["kl_uniform"],
           "judge_channel_agreement": float((judged_a == true_a).mean()),
           "expected_kl_perfect_sampler": expected_floor_kl(n)}
    save_npz(STACKED_DIR / "floor.npz", labels=judged_a, true_labels=true_a)
    write_json(STACKED_DIR / "floor.json", out)
    echo(f"stacked floor: {js['modes_covered']}/1000 modes, KL {js['kl_uniform']:.4f} over {n} real "
         f"stacks (true labels: KL {ts['kl_uniform']:.4f}; the judge agrees on "
         f"{100 * out['judge_channel_agreement']:.2f}% of channels) in {time.perf_counter() - t0:.1f} s")
    return out
