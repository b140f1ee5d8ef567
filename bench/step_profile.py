"""`bench/run.py --only step`: where one training step of the `gan` variant goes.

The trainer is the real one (`GanTrainer` on params.yaml's `gan` variant: the seed MLP, batch
64, EMA of G on, diagnostics every `log_every` G steps), built as run.py's `make_trainer`
builds its trainers, under the torch switches a `ganlab train` process has. Three runs of the
same N steps after a warm-up:

1. plain, twice (before and after the profiled run; the faster counts): the step time
   without the profiler, so its per-op overhead does not inflate the total;
2. under `torch.profiler` (CPU) with named scopes put around the step's parts from the
   outside, for this run only: forward hooks on G and D, wrappers on the trainer instance's
   `train_step`, `update_discriminator`, `update_generator`, `update_ema` and `d_sigma`,
   and on `Tensor.backward`; the optimisers name their own `step` and `zero_grad`. Each
   scope's time less the scopes nested in it is charged to one phase, so the phases add up
   to the profiled run exactly (`other` is the loop around the steps);
3. `log_every` steps (one full logging cycle) under the profiler with `record_shapes=True`:
   every `aten::mm` / `aten::addmm` the steps call, with its operand shapes and strides.

Each distinct GEMM is then timed alone (same shapes and memory layout, best of several
repeats), which gives the step's own-shape limit: the time its GEMMs would take at their
isolated rates. `% of own-shape limit` = that limit / the measured step time. Last, the same
GEMMs are timed back to back in the step's order with nothing between them: each then finds
its operands out of cache as in a step, so this (not the sum of isolated rates) is the time
the GEMMs alone need; `% of the GEMMs back to back` = that / the step time.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from contextlib import contextmanager

import torch
import yaml
from common import REPO, fmt, ganlab_modes, load_images, print_table
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

VARIANT = "gan"
PHASES = ("G forward", "D forward", "D backward", "G backward", "optimiser", "EMA", "diagnostics",
          "loss, noise, batch", "other")
GEMM_OPS = ("aten::mm", "aten::addmm")

# the scopes this module opens (prefixed so they cannot collide with torch's or ganlab's own)
S_RUN = "bench:run"
S_STEP = "bench:step"
S_STEP_LOG = "bench:step+log"
S_G_FWD = "bench:G forward"
S_D_FWD = "bench:D forward"
S_D_UPDATE = "bench:D update"
S_G_UPDATE = "bench:G update"
S_BACKWARD = "bench:backward"
S_EMA = "bench:EMA"
S_SIGMA = "bench:sigma"


# ---- the trainer ---------------------------------------------------------------------------


def gan_params():
    """params.yaml on the CPU with its `gan` variant as the only one (EMA and the rest as set)."""
    from ganlab.config.params import parse_params

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["device"] = "cpu"
    raw["variants"] = {VARIANT: raw["variants"][VARIANT]}
    return parse_params(raw)


def make_gan_trainer(real: torch.Tensor):
    """As run.py's make_trainer, for the `gan` variant of params.yaml."""
    from ganlab.kinds.unconditional.train import GanTrainer

    ganlab_modes().apply()
    return GanTrainer(gan_params(), VARIANT, real, torch.device("cpu"))


def run_steps(trainer, state, n: int) -> None:
    """`n` training steps through the trainer's own epoch loop (epochs cut short as needed)."""
    full = trainer.steps_per_epoch
    try:
        while n > 0:
            trainer.steps_per_epoch = min(full, n)
            trainer.run_epoch(state)
            n -= trainer.steps_per_epoch
    finally:
        trainer.steps_per_epoch = full


# ---- named scopes around the step's parts ------------------------------------------------------


def _scope_module(module: nn.Module, name: str) -> list:
    open_scopes: list = []

    def enter(_m, _args):
        rf = record_function(name)
        rf.__enter__()
        open_scopes.append(rf)

    def leave(_m, _args, _out):
        open_scopes.pop().__exit__(None, None, None)

    return [module.register_forward_pre_hook(enter),
            module.register_forward_hook(leave, always_call=True)]


def _scope_method(obj, attr: str, name) -> None:
    """Shadow the bound method `obj.attr` by an instance attribute that runs it in a scope;
    `name` may be a function of the call's arguments."""
    inner = getattr(obj, attr)

    def scoped(*args, **kwargs):
        with record_function(name(*args, **kwargs) if callable(name) else name):
            return inner(*args, **kwargs)

    setattr(obj, attr, scoped)


@contextmanager
def phase_scopes(trainer):
    """The trainer (and Tensor.backward) with the bench's scopes, undone on exit."""
    handles = _scope_module(trainer.g, S_G_FWD) + _scope_module(trainer.d, S_D_FWD)
    methods = {"train_step": lambda i, state, log_now: S_STEP_LOG if log_now else S_STEP,
               "update_discriminator": S_D_UPDATE, "update_generator": S_G_UPDATE,
               "update_ema": S_EMA, "d_sigma": S_SIGMA}
    for attr, name in methods.items():
        _scope_method(trainer, attr, name)
    plain_backward = torch.Tensor.backward

    def backward(self, *args, **kwargs):
        with record_function(S_BACKWARD):
            return plain_backward(self, *args, **kwargs)

    torch.Tensor.backward = backward
    try:
        yield
    finally:
        torch.Tensor.backward = plain_backward
        for attr in methods:
            delattr(trainer, attr)  # the class's methods show through again
        for h in handles:
            h.remove()


# ---- phases from the profile ---------------------------------------------------------------------


def _us(ev) -> float:
    return ev.time_range.end - ev.time_range.start


def _is_scope(ev) -> bool:
    return ev.name.startswith("bench:") or ev.name.startswith("Optimizer.")


def _scope_parent(ev):
    p = ev.cpu_parent
    while p is not None and not _is_scope(p):
        p = p.cpu_parent
    return p


def _inside(ev, name: str) -> bool:
    p = ev.cpu_parent
    while p is not None:
        if p.name == name:
            return True
        p = p.cpu_parent
    return False


def attribute_phases(events, n_steps: int) -> tuple[dict, int]:
    """Microseconds per phase over the profiled run, from the scopes' exclusive times, and the
    number of logging steps in it.

    A scope's exclusive time is its span less the spans of the scopes directly nested in it.
    The step's own code between the scopes (latent draw, batch gather, loss ops) is charged
    to `loss, noise, batch` at its mean over non-logging steps; what logging steps spend
    beyond that (the logged dict's tensors) goes to `diagnostics`, as do `d_sigma` and the
    rest of the G update (G's gradient norm on logging steps)."""
    scopes = [e for e in events if _is_scope(e)]
    excl = {id(e): _us(e) for e in scopes}
    for e in scopes:
        parent = _scope_parent(e)
        if parent is not None:
            excl[id(parent)] -= _us(e)
    us = dict.fromkeys(PHASES, 0.0)
    step_self = {S_STEP: [], S_STEP_LOG: []}
    runs = 0
    for e in scopes:
        t = excl[id(e)]
        if e.name == S_RUN:
            us["other"] += t
            runs += 1
        elif e.name in step_self:
            step_self[e.name].append(t)
        elif e.name == S_G_FWD:
            us["G forward"] += t
        elif e.name == S_D_FWD:
            us["D forward"] += t
        elif e.name == S_BACKWARD:
            us["D backward" if _inside(e, S_D_UPDATE) else "G backward"] += t
        elif e.name.startswith("Optimizer."):
            us["optimiser"] += t
        elif e.name == S_EMA:
            us["EMA"] += t
        elif e.name in (S_SIGMA, S_G_UPDATE):
            us["diagnostics"] += t
        elif e.name == S_D_UPDATE:
            us["other"] += t  # the Python around zero_grad / backward / step (no clipping in gan)
    if runs != 1:
        raise RuntimeError(f"expected one {S_RUN} scope in the profile, found {runs}")
    plain, logged = step_self[S_STEP], step_self[S_STEP_LOG]
    if len(plain) + len(logged) != n_steps:
        raise RuntimeError(f"profiled {len(plain) + len(logged)} steps, expected {n_steps}")
    base = sum(plain) / len(plain) if plain else min(logged)
    us["loss, noise, batch"] = base * n_steps
    us["diagnostics"] += sum(logged) - base * len(logged)
    return us, len(logged)


# ---- the step's GEMMs -------------------------------------------------------------------------


def _linear_layers(trainer) -> list[dict]:
    return [{"net": net, "layer": name, "in": m.in_features, "out": m.out_features}
            for net, module in (("G", trainer.g), ("D", trainer.d))
            for name, m in module.named_modules() if isinstance(m, nn.Linear)]


def _context(ev) -> str:
    """Where a GEMM ran: G's or D's forward, D's update (backward through D) or G's update
    (backward through D's input side, then G)."""
    p = ev.cpu_parent
    while p is not None:
        if p.name == S_G_FWD:
            return "G fwd"
        if p.name == S_D_FWD:
            return "D fwd"
        if p.name == S_D_UPDATE:
            return "D bwd"
        if p.name == S_G_UPDATE:
            return "G bwd"
        p = p.cpu_parent
    return "other"


def _role(ctx: str, m: int, k: int, n: int, layers: list[dict]) -> str:
    """Which Linear layer(s) a GEMM (m x k) . (k x n) run in `ctx` belongs to, and which of its
    three: forward (B x in . in x out), grad-input (B x out . out x in), grad-weight
    (out x B . B x in)."""
    nets = {"G fwd": "G", "D fwd": "D", "D bwd": "D", "G bwd": "GD"}.get(ctx, "GD")
    fwd = ctx.endswith("fwd") or ctx == "other"
    bwd = ctx.endswith("bwd") or ctx == "other"
    roles = []
    for ly in layers:
        if ly["net"] not in nets:
            continue
        tag = f"{ly['net']} {ly['in']}>{ly['out']}"
        if fwd and (k, n) == (ly["in"], ly["out"]):
            roles.append(f"{tag} fwd")
        if bwd and (k, n) == (ly["out"], ly["in"]):
            roles.append(f"{tag} grad-in")
        if bwd and (m, n) == (ly["out"], ly["in"]):
            roles.append(f"{tag} grad-W")
    return " / ".join(roles) or "?"


def _has_gemm_ancestor(ev) -> bool:
    p = ev.cpu_parent
    while p is not None:
        if p.name in GEMM_OPS:
            return True
        p = p.cpu_parent
    return False


def _operands(ev) -> tuple:
    """(op, a shape, b shape, a strides, b strides, bias shape, bias strides) of a GEMM event."""
    shapes, strides = ev.input_shapes, ev.structured_input_strides
    if ev.name == "aten::addmm":  # (bias, a, b, beta, alpha)
        return (ev.name, tuple(shapes[1]), tuple(shapes[2]), tuple(strides[1]), tuple(strides[2]),
                tuple(shapes[0]), tuple(strides[0]))
    return ev.name, tuple(shapes[0]), tuple(shapes[1]), tuple(strides[0]), tuple(strides[1]), None, None


def step_gemms(events, n_steps: int, layers: list[dict]) -> list[dict]:
    """The distinct GEMMs of the profiled steps (where they ran, shapes, strides, bias), with
    their calls per step; a GEMM called inside another is not counted again."""
    counts: Counter = Counter(
        (_context(e), *_operands(e)) for e in events
        if e.name in GEMM_OPS and not _has_gemm_ancestor(e))
    rows = []
    for (ctx, op, a_shape, b_shape, a_stride, b_stride, bias_shape, bias_stride), c in counts.items():
        m, k = a_shape
        n = b_shape[1]
        rows.append({"where": ctx, "op": op, "m": m, "k": k, "n": n, "a_stride": list(a_stride),
                     "b_stride": list(b_stride),
                     "bias_shape": list(bias_shape) if bias_shape else None,
                     "bias_stride": list(bias_stride) if bias_stride else None,
                     "calls_per_step": c / n_steps, "flops": 2.0 * m * k * n,
                     "role": _role(ctx, m, k, n, layers)})
    order = {"G fwd": 0, "D fwd": 1, "D bwd": 2, "G bwd": 3}
    rows.sort(key=lambda r: (order.get(r["where"], 4), -r["flops"]))
    return rows


def _timing_key(row: dict) -> tuple:
    return (row["op"], row["m"], row["k"], row["n"], tuple(row["a_stride"]), tuple(row["b_stride"]),
            tuple(row["bias_shape"] or ()), tuple(row["bias_stride"] or ()))


def _strided(shape, stride) -> torch.Tensor:
    t = torch.empty_strided(tuple(shape), tuple(stride))
    t.copy_(torch.randn(tuple(shape)))
    return t


def time_gemm(row: dict, reps: int, min_rep_s: float = 5e-3) -> float:
    """Seconds per call of the GEMM alone, at its shapes and layout: best of `reps` repeats of
    a back-to-back loop, its length grown until one loop takes >= min_rep_s (as timeit's
    autorange: a single call would time the worker threads' wake-up, not the GEMM)."""
    a = _strided((row["m"], row["k"]), row["a_stride"])
    b = _strided((row["k"], row["n"]), row["b_stride"])
    if row["op"] == "aten::addmm":
        bias = _strided(row["bias_shape"], row["bias_stride"])

        def call():
            return torch.addmm(bias, a, b)
    else:
        def call():
            return torch.mm(a, b)

    def loop(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            call()
        return time.perf_counter() - t0

    inner = 1
    while loop(inner) < min_rep_s:
        inner *= 2
    return min(loop(inner) for _ in range(reps)) / inner


def time_gemm_sequence(rows: list[dict], reps: int, min_rep_s: float = 20e-3) -> float:
    """Seconds for one step's GEMMs called back to back, grouped as the step runs them (G
    forward, D forward, D backward, G backward; largest first within a group, as step_gemms
    sorts them), each at its shapes and layout, nothing else between them: the GEMMs' own
    limit once each no longer follows a repeat of itself. A GEMM run `c` times per step is
    called int(c) times in a row (c is 1 for every GEMM of the gan step); the fraction left
    (GEMMs of the logging steps only) is charged at its isolated rate (`isolated_s`)."""
    calls, extra_s = [], 0.0
    for row in rows:
        a = _strided((row["m"], row["k"]), row["a_stride"])
        b = _strided((row["k"], row["n"]), row["b_stride"])
        bias = _strided(row["bias_shape"], row["bias_stride"]) if row["op"] == "aten::addmm" else None
        call = (functools.partial(torch.mm, a, b) if bias is None
                else functools.partial(torch.addmm, bias, a, b))
        whole = int(row["calls_per_step"])
        calls += [call] * whole
        extra_s += (row["calls_per_step"] - whole) * row["isolated_s"]

    def loop(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            for call in calls:
                call()
        return time.perf_counter() - t0

    inner = 1
    while loop(inner) < min_rep_s:
        inner *= 2
    return min(loop(inner) for _ in range(reps)) / inner + extra_s


# ---- the section ------------------------------------------------------------------------------


def _profile(fn, record_shapes: bool):
    with profile(activities=[ProfilerActivity.CPU], record_shapes=record_shapes) as prof:
        with record_function(S_RUN):
            fn()
    return prof.events()


def bench_step(threads: int, peak_gflops: float | None, steps: int = 200, warm: int = 20,
               gemm_reps: int = 7) -> dict:
    from ganlab.data.images import to_unit_range
    from ganlab.kinds.base import TrainState

    torch.set_num_threads(threads)
    tr, _ = load_images()
    trainer = make_gan_trainer(to_unit_range(tr.images))
    p = trainer.p
    state = TrainState()
    run_steps(trainer, state, warm)

    def timed() -> float:
        t0 = time.perf_counter()
        run_steps(trainer, state, steps)
        return time.perf_counter() - t0

    plain_s = [timed()]
    with phase_scopes(trainer):
        events = _profile(lambda: run_steps(trainer, state, steps), record_shapes=False)
    root = next(e for e in events if e.name == S_RUN)
    profiled_s = _us(root) / 1e6
    us, n_log = attribute_phases(events, steps)
    gemm_in_step_us = sum(_us(e) for e in events if e.name in GEMM_OPS and not _has_gemm_ancestor(e))
    plain_s.append(timed())
    step_s = min(plain_s) / steps

    # one full logging cycle with shapes (log_every G steps of n_critic steps each, one of them
    # logging): the GEMMs per step, the logging step's share included
    cycle = p.log_every * p.n_critic
    with phase_scopes(trainer):  # the scopes tell which net and pass each GEMM belongs to
        shape_events = _profile(lambda: run_steps(trainer, state, cycle), record_shapes=True)
    layers = _linear_layers(trainer)
    gemms = step_gemms(shape_events, cycle, layers)
    alone: dict[tuple, float] = {}
    for g in gemms:
        key = _timing_key(g)
        if key not in alone:
            alone[key] = time_gemm(g, gemm_reps)
        g["isolated_s"] = alone[key]
        g["isolated_gflops"] = g["flops"] / g["isolated_s"] / 1e9
        g["limit_ms_per_step"] = 1e3 * g["calls_per_step"] * g["isolated_s"]
    flops_step = sum(g["flops"] * g["calls_per_step"] for g in gemms)
    limit_s = sum(g["calls_per_step"] * g["isolated_s"] for g in gemms)
    sequence_s = time_gemm_sequence(gemms, gemm_reps)

    total_us = sum(us.values())
    phases = [{"phase": ph, "share": us[ph] / total_us, "ms_per_step": 1e3 * step_s * us[ph] / total_us,
               "profiled_ms_per_step": us[ph] / 1e3 / steps} for ph in PHASES]
    return {
        "variant": VARIANT, "batch_size": p.batch_size, "ema": p.ema, "log_every": p.log_every,
        "threads": threads, "steps": steps, "warm_steps": warm, "log_steps": n_log,
        "plain_run_s": plain_s, "step_ms": 1e3 * step_s, "profiled_step_ms": 1e3 * profiled_s / steps,
        "profiler_overhead": profiled_s / (steps * step_s) - 1.0,
        "phases": phases, "phase_share_sum": sum(ph["share"] for ph in phases),
        "layers": layers, "gemms": gemms, "distinct_gemm_shapes": len(alone),
        "gemm_calls_per_step": sum(g["calls_per_step"] for g in gemms),
        "gemm_mflop_per_step": flops_step / 1e6, "own_shape_limit_ms": 1e3 * limit_s,
        "gemm_sequence_ms": 1e3 * sequence_s, "pct_gemm_sequence": 100 * sequence_s / step_s,
        "achieved_gflops": flops_step / step_s / 1e9, "pct_own_shape_limit": 100 * limit_s / step_s,
        "gemm_in_step_ms_profiled": gemm_in_step_us / 1e3 / steps,
        "peak_gflops": peak_gflops,
        "pct_peak": (100 * flops_step / step_s / 1e9 / peak_gflops) if peak_gflops else None,
    }


def print_step(res: dict) -> None:
    rows = [[ph["phase"], fmt(ph["ms_per_step"], ".3f"), fmt(100 * ph["share"], ".1f")]
            for ph in res["phases"]]
    rows.append(["step (no profiler)", fmt(res["step_ms"], ".3f"), fmt(100 * res["phase_share_sum"], ".1f")])
    rows.append(["step (profiled)", fmt(res["profiled_step_ms"], ".3f"),
                 f"{100 * res['profiler_overhead']:+.0f} % overhead"])
    print_table(f"step: one training step of `{res['variant']}` (batch {res['batch_size']}, EMA "
                f"{res['ema']}, {res['threads']} threads, {res['steps']} steps, {res['log_steps']} "
                f"logging); ms = share of the profiled run x step time without profiler",
                ["phase", "ms/step", "% of step"], rows)
    print_table("step: the GEMMs of one step (aten::mm/addmm from the profiler), each timed alone "
                "at its shape and layout",
                ["where", "M x K . K x N", "op", "layer / role", "calls/step", "MFLOP/step",
                 "alone GFLOP/s", "ms/step alone"],
                [[g["where"], f"{g['m']}x{g['k']}.{g['k']}x{g['n']}", g["op"].removeprefix("aten::"),
                  g["role"],
                  fmt(g["calls_per_step"], ".1f"), fmt(g["flops"] * g["calls_per_step"] / 1e6, ".2f"),
                  fmt(g["isolated_gflops"], ".1f"), fmt(g["limit_ms_per_step"], ".3f")]
                 for g in res["gemms"]])
    print_table("step: GEMM arithmetic against the step",
                ["quantity", "value"],
                [["GEMM MFLOP per step", fmt(res["gemm_mflop_per_step"], ".2f")],
                 ["GEMM calls per step", fmt(res["gemm_calls_per_step"], ".1f")],
                 ["own-shape limit ms/step (GEMMs at their isolated rates)",
                  fmt(res["own_shape_limit_ms"], ".3f")],
                 ["the step's GEMMs back to back, nothing between (ms)", fmt(res["gemm_sequence_ms"], ".3f")],
                 ["GEMM ms/step inside the step (profiled)", fmt(res["gemm_in_step_ms_profiled"], ".3f")],
                 ["step ms (no profiler)", fmt(res["step_ms"], ".3f")],
                 ["achieved GFLOP/s (GEMM FLOPs / step time)", fmt(res["achieved_gflops"], ".2f")],
                 ["% of own-shape limit (limit / step time)", fmt(res["pct_own_shape_limit"], ".1f")],
                 ["% of the GEMMs back to back (their time / step time)",
                  fmt(res["pct_gemm_sequence"], ".1f")],
                 ["2048^2 matmul peak GFLOP/s", fmt(res["peak_gflops"], ".1f")],
                 ["% of 2048^2 peak", fmt(res["pct_peak"], ".2f")]])
