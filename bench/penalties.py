"""`bench/run.py --only penalties`: the D step with R1 + R2, one pass against three.

With clean inputs (no instance noise) R1 and R2 differentiate D's outputs on the very inputs
the loss scores, so `GanTrainer.discriminator_objective` takes the loss and both penalties
from one joint pass of D over reals and fakes plus one input-gradient pass
(`outputs_and_zero_centred_penalties`). The baseline is the path it replaced, spelled out
here: R1's own forward and gradient on the reals, R2's on the fakes, then the loss's joint
forward. Both sides run the same D on the same batch, each followed by the backward that
the D step runs; the sides alternate, median of `reps` timings of `steps` D steps each. The
two sides' losses and D gradients are compared (they agree to float rounding).

Setups, from params.yaml: the default `r3gan` variant (the seed MLP, batch 64) and the
Stacked MNIST pair's `rpgan_r1r2` (DCGAN G 64 / D 64 on 3 x 28 x 28 stacks, batch 64). No
data is read: the batches are random images of the right shapes.
"""

from __future__ import annotations

import statistics
import time

import torch
import yaml
from common import REPO, fmt, print_table


def _trainers(root=REPO) -> dict:
    from ganlab.config.params import parse_params
    from ganlab.kinds.unconditional.train import GanTrainer
    from ganlab.stacked.train import StackedTrainer, stacked_params

    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["device"] = "cpu"
    params = parse_params(raw)
    gen = torch.Generator().manual_seed(0)
    digits = torch.rand((512, 1, 28, 28), generator=gen) * 2 - 1
    out = {}
    if "r3gan" in params.variants:
        out["r3gan (MLP)"] = GanTrainer(params, "r3gan", digits, torch.device("cpu"))
    if "rpgan_r1r2" in params.stacked.variants:
        run_params, sv = stacked_params(params, "rpgan_r1r2", 0)
        out["rpgan_r1r2 (Stacked)"] = StackedTrainer(run_params, "rpgan_r1r2", sv, digits,
                                                     torch.device("cpu"))
    return out


def _separate(t, real, fake):
    """The replaced path: R1 and R2 each with its own forward, then the loss's joint pass."""
    from ganlab.core.losses import r1_penalty, r2_penalty

    p = t.p
    r1 = r1_penalty(t.d, real, sample_dims=t.sample_dims)
    r2 = r2_penalty(t.d, fake, sample_dims=t.sample_dims)
    out_real, out_fake = t._joint(real, fake)
    return t.loss.d_loss(out_real, out_fake) + 0.5 * p.r1 * r1 + 0.5 * p.r2 * r2


def _shared(t, real, fake):
    d_loss, _, _, _ = t.discriminator_objective(t.d, t.d, real, fake, 0.0, joint=t._joint)
    return d_loss


def _time(t, fn, real, fake, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        t.d.zero_grad(set_to_none=True)
        fn(t, real, fake).backward()
    return 1e3 * (time.perf_counter() - t0) / steps


def bench_penalties(quick: bool = False, root=REPO) -> dict:
    # the thread count is run.py's --threads, set before any section runs
    steps, reps = (3, 3) if quick else (20, 5)
    rows = []
    for name, t in _trainers(root).items():
        t.begin_epoch(0)
        real = t.real_batch(0)
        with torch.no_grad():
            fake = t.g(t.latent(t.p.batch_size))
        # agreement: loss and D's gradient from both paths
        grads = {}
        for side, fn in (("separate", _separate), ("shared", _shared)):
            t.d.zero_grad(set_to_none=True)
            loss = fn(t, real, fake)
            loss.backward()
            grads[side] = (loss.item(), [q.grad.clone() for q in t.d.parameters()])
        diff = max((a - b).abs().max().item()
                   for a, b in zip(grads["separate"][1], grads["shared"][1], strict=True))
        scale = max(a.abs().max().item() for a in grads["separate"][1])
        _time(t, _separate, real, fake, 2)  # warm-up
        _time(t, _shared, real, fake, 2)
        sep, sha = [], []
        for _ in range(reps):
            sep.append(_time(t, _separate, real, fake, steps))
            sha.append(_time(t, _shared, real, fake, steps))
        ms_sep, ms_sha = statistics.median(sep), statistics.median(sha)
        rows.append({"setup": name, "batch": int(real.shape[0]), "separate_ms": ms_sep,
                     "shared_ms": ms_sha, "ratio": ms_sep / ms_sha,
                     "loss_diff": abs(grads["separate"][0] - grads["shared"][0]),
                     "grad_rel_diff": diff / max(scale, 1e-30)})
    return {"threads": torch.get_num_threads(), "steps": steps, "reps": reps, "rows": rows}


def print_penalties(res: dict) -> None:
    print_table(
        f"penalties: one D step with R1 + R2 (objective + backward), median of {res['reps']} x "
        f"{res['steps']} steps, {res['threads']} threads; separate = R1, R2 and the loss each "
        f"with its own forward (the replaced path), shared = one joint pass",
        ["setup", "batch", "separate ms", "shared ms", "separate / shared", "|loss diff|",
         "max grad diff / max grad"],
        [[r["setup"], str(r["batch"]), fmt(r["separate_ms"], ".1f"), fmt(r["shared_ms"], ".1f"),
          fmt(r["ratio"], ".2f"),
          f"{r['loss_diff']:.1e}", f"{r['grad_rel_diff']:.1e}"] for r in res["rows"]])
