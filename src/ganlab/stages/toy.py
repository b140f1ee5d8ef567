"""Stage `toy`: mode coverage of one variant's loss and penalties on the 2-D mixtures.

Every `toy.datasets` mixture x `toy.seeds` trains batched (ganlab.toy.suite); the scores go to
metrics/toy/<V>.json (and per dataset under metrics/toy/<V>/), the run to MLflow's toy
experiment. Conv, conditional and cycle variants have no toy run: their stage writes
`toy_runs: 0` before importing torch.
"""

from __future__ import annotations

import time
from pathlib import Path

from ganlab.config.params import Params, load_params
from ganlab.config.toy import toy_skip_reason
from ganlab.util import write_json

TOY_DIR = Path("metrics/toy")


def skip_toy(params_path: Path, variant: str, echo=print) -> bool:
    """True (and the stage's output written) when the variant has no toy run; decided from
    params alone, before torch is imported: these stages cost a process start only."""
    v = load_params(params_path).variant(variant)
    skipped = toy_skip_reason(v.arch, v.kind)
    if not skipped:
        return False
    echo(f"toy {variant}: no toy run ({skipped})")
    (TOY_DIR / variant).mkdir(parents=True, exist_ok=True)
    write_json(TOY_DIR / f"{variant}.json", {"toy_runs": 0})
    return True


def run_toy(params: Params, variant: str, echo=print) -> dict:
    import torch

    from ganlab.toy.suite import forked_workers, members_of, run_toy_variant, toy_variant_settings
    from ganlab.tracking import runs as tracking
    from ganlab.tracking.store import TOY

    # Nets this small gain nothing from a second intra-op thread, and lose 50x when the
    # other core is busy (measured); one thread per toy stage, set before any torch work,
    # so the toy workers can be forked instead of spawned.
    torch.set_num_threads(1)
    v = params.variants[variant]
    cfg = params.toy
    out = TOY_DIR / variant
    summary: dict[str, float] = {"toy_runs": 0}
    t0 = time.perf_counter()
    with forked_workers():
        cells = run_toy_variant(variant, v, cfg, out, log=echo)
    seconds = time.perf_counter() - t0
    # no wall time in the DVC metrics file: the same params must give the same bytes
    # n_critic as the toy runs train it (a variant's own toy settings may replace its image one)
    n_critic = int(toy_variant_settings(v.__dict__, cfg, variant)["n_critic"])
    summary.update(toy_runs=len(members_of(cfg)), g_steps=cfg.g_steps, n_critic=n_critic)
    for dataset, m in cells.items():
        summary.update({f"{dataset}.{k}": x for k, x in m.items()})
    tags = {**tracking.run_tags(variant, "toy", v, source="ganlab toy"), "suite": "toy",
            "mlflow.runName": f"toy-{variant}"}
    warned = {d: m["collapse_warnings"] for d, m in cells.items() if m["collapse_warnings"]}
    if warned:  # visible in the MLflow run list, not only in its metrics
        tags["collapse_warning"] = ", ".join(f"{d}: {n} warning(s)" for d, n in warned.items())
    run_id = tracking.start_run(tags["mlflow.runName"], {
        "variant": variant, "datasets": ",".join(cfg.datasets),
        "seeds": ",".join(map(str, cfg.seeds)), "g_steps": cfg.g_steps,
        "batch_size": cfg.batch_size, "width": cfg.width}, tags, experiment=TOY)
    tracking.log_metrics(run_id, [{"step": 0, "toy/seconds": seconds,
                                   **{f"toy/{k}": float(x) for k, x in summary.items()}}])
    tracking.log_artifacts(run_id, [out / d / "progress.png" for d in cells]
                           + [out / d / "scores.json" for d in cells], "toy")
    tracking.set_terminated(run_id)
    write_json(TOY_DIR / f"{variant}.json", summary)
    echo(f"toy {variant}: {summary['toy_runs']} trainings of {cfg.g_steps} G steps in {seconds:.1f} s")
    return summary
