"""`bench/run.py --only toy_ensemble`: E toy trainings batched in one `EnsembleTrainer`
against the same E trainings run one after another with `GanTrainer`, same G steps.

Also: counted FLOPs per batched step (torch.utils.flop_counter) over two measured GEMM
rates, the fp32 matmul peak and a batched GEMM of the toy layer's own shape, so the table
says how much of a step is arithmetic and how much is dispatch and elementwise work.
"""

from __future__ import annotations

import time

import torch
import yaml
from common import REPO, count_flops, fmt, print_table

MEMBERS = (2, 6, 10)
BATCHES = (64, 256)


def _setup(name: str, n_members: int, batch: int, steps: int):
    from ganlab.config.toy import ToySuiteParams
    from ganlab.toy.ensemble import Member
    from ganlab.toy.suite import member_data, member_params, toy_variant_settings

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    cfg = ToySuiteParams.from_dict({**raw["toy"], "batch_size": batch})
    settings = toy_variant_settings({**raw["training"], **raw["variants"][name]}, cfg)
    members = [Member(("ring8", "grid25")[k % 2], k // 2) for k in range(n_members)]
    params = [member_params(name, settings, m) for m in members]
    n = steps * params[0].variant(name).n_critic * batch
    data = [member_data(m, cfg, n)["real"] for m in members]
    return cfg, params, data


def _run(trainer, steps: int) -> float:
    from ganlab.kinds.base import TrainState

    trainer.steps_per_epoch = steps * trainer.p.n_critic
    t0 = time.perf_counter()
    trainer.run_epoch(TrainState())
    return time.perf_counter() - t0


def bmm_rate(n_members: int, batch: int, width: int, reps: int) -> float:
    """GFLOP/s of baddbmm at the hidden layer's shape (E, B, w) x (E, w, w)."""
    x, w, b = torch.randn(n_members, batch, width), torch.randn(n_members, width, width), \
        torch.randn(n_members, 1, width)
    for _ in range(10):
        torch.baddbmm(b, x, w)
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.baddbmm(b, x, w)
    dt = (time.perf_counter() - t0) / reps
    return 2.0 * n_members * batch * width * width / dt / 1e9


def bench_toy_ensemble(quick: bool, peak_gflops: float, name: str = "gan") -> list[dict]:
    from ganlab.kinds.base import TrainState
    from ganlab.kinds.unconditional.train import GanTrainer
    from ganlab.toy.ensemble import EnsembleTrainer

    steps, warm = (5, 2) if quick else (150, 20)
    cpu = torch.device("cpu")
    rows = []
    for batch in BATCHES:
        for n_members in (MEMBERS[:2] if quick else MEMBERS):
            cfg, params, data = _setup(name, n_members, batch, steps + warm)
            ens = EnsembleTrainer(params, name, data, cpu)
            _run(ens, warm)
            t_batched = _run(ens, steps)
            t_seq = 0.0
            for mp, real in zip(params, data, strict=True):
                solo = GanTrainer(mp, name, real, cpu)
                _run(solo, warm)
                t_seq += _run(solo, steps)
            probe = EnsembleTrainer(params, name, data, cpu)
            probe.steps_per_epoch = probe.p.n_critic
            flops = count_flops(lambda: probe.run_epoch(TrainState()))  # noqa: B023
            step_s = t_batched / steps
            rate = bmm_rate(n_members, batch, cfg.width, 20 if quick else 200)
            rows.append({
                "variant": name, "members": n_members, "batch_size": batch, "width": cfg.width,
                "g_steps": steps, "batched_s": t_batched, "sequential_s": t_seq,
                "speedup": t_seq / t_batched, "batched_ms_per_step": 1e3 * step_s,
                "sequential_ms_per_member_step": 1e3 * t_seq / steps / n_members,
                "mflop_per_step": flops / 1e6, "bmm_gflops": rate,
                "arith_share_bmm": flops / (rate * 1e9) / step_s,
                "arith_share_peak": flops / (peak_gflops * 1e9) / step_s,
            })
    return rows


def print_toy(rows: list[dict]) -> None:
    print_table(
        "toy ensemble: E members batched vs the same E one after another (same G steps); "
        "arith % = counted FLOPs / GEMM rate / step time",
        ["E", "batch", "width", "batched ms/step", "seq ms/member-step", "speed-up",
         "MFLOP/step", "bmm GFLOP/s", "arith % (bmm)", "arith % (peak)"],
        [[str(r["members"]), str(r["batch_size"]), str(r["width"]),
          fmt(r["batched_ms_per_step"], ".2f"), fmt(r["sequential_ms_per_member_step"], ".2f"),
          fmt(r["speedup"], ".2f") + "x", fmt(r["mflop_per_step"], ".1f"), fmt(r["bmm_gflops"], ".1f"),
          fmt(100 * r["arith_share_bmm"], ".0f"), fmt(100 * r["arith_share_peak"], ".0f")]
         for r in rows])
