"""`bench/run.py --only judge`: one pass of the judge over N images at the batch it now uses
(`ganlab.nets.judge.JUDGE_BATCH`) against the 1,000 it used before, in one run.

The judge scores every image the lab evaluates: the evaluate, quality and floor stages
(`JudgeExtractor`: features and softmax) and Stacked MNIST (`channel_labels`: 78,000 channels
per 26,000 stacks). Both sides run the same judge net with random weights (the bench reads no
trained file; the trained judge gained more, for reasons not measured: 2.2x at 1 thread
and 2.4x at 2 in a probe) over the same random images, alternating, the median of `reps`
passes each; the outputs are compared bit for bit. A few other batch sizes show where the curve is
flat.
"""

from __future__ import annotations

import statistics
import time

import torch
from common import fmt, print_table

OLD_BATCH = 1000


def _pass_seconds(ext, x: torch.Tensor) -> tuple[float, tuple[torch.Tensor, torch.Tensor]]:
    t = time.perf_counter()
    out = ext(x)
    return time.perf_counter() - t, out


def bench_judge(quick: bool = False) -> dict:
    from ganlab.nets.judge import JUDGE_BATCH, Judge, JudgeExtractor

    n, reps = (2000, 2) if quick else (10000, 3)
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    judge = Judge().eval()
    x = torch.rand((n, 1, 28, 28), generator=gen) * 2 - 1
    sizes = sorted({OLD_BATCH, JUDGE_BATCH, 64, 256})
    exts = {b: JudgeExtractor(judge, torch.device("cpu"), batch_size=b) for b in sizes}
    times: dict[int, list[float]] = {b: [] for b in sizes}
    outs = {}
    for _ in range(reps):
        for b in sizes:
            dt, outs[b] = _pass_seconds(exts[b], x)
            times[b].append(dt)
    ref = outs[OLD_BATCH]
    rows = []
    for b in sizes:
        s = statistics.median(times[b])
        diff = max(float((outs[b][k] - ref[k]).abs().max()) for k in (0, 1))
        rows.append({"batch": b, "seconds": s, "images_s": n / s, "max_abs_diff": diff,
                     "identical": bool(torch.equal(outs[b][0], ref[0]) and torch.equal(outs[b][1], ref[1]))})
    by = {r["batch"]: r for r in rows}
    return {"n_images": n, "reps": reps, "threads": torch.get_num_threads(), "batch": JUDGE_BATCH,
            "old_batch": OLD_BATCH, "rows": rows,
            "speedup": by[OLD_BATCH]["seconds"] / by[JUDGE_BATCH]["seconds"],
            "identical": by[JUDGE_BATCH]["identical"]}


def print_judge(res: dict) -> None:
    print_table(f"judge pass over {res['n_images']:,} images ({res['threads']} threads, median of "
                f"{res['reps']}; outputs against batch {res['old_batch']})",
                ["batch", "s", "images/s", "bit-identical"],
                [[str(r["batch"]) + (" (now)" if r["batch"] == res["batch"] else ""),
                  fmt(r["seconds"], ".3f"), fmt(r["images_s"], ",.0f"), str(r["identical"])]
                 for r in res["rows"]])
    print(f"batch {res['batch']} against {res['old_batch']}: {res['speedup']:.2f}x faster, "
          f"outputs bit-identical: {res['identical']}")
