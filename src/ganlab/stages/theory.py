"""Stage `theory`: the divergence lab (D*, max_D V = -log 4 + 2 JSD, vanishing gradients,
the non-saturating loss at D*) on distributions with known densities; an MLflow run of its own."""

from __future__ import annotations

from pathlib import Path

from ganlab.config.params import Params
from ganlab.theory.lab import run_theory as run_lab


def run_theory(params: Params, out: Path, quick: bool, echo=print) -> dict:
    from ganlab.tracking.runs import log_artifacts, log_metrics, run_tags, set_terminated, start_run
    from ganlab.tracking.store import THEORY

    m = run_lab(out, seed=params.seed, quick=quick)
    run_id = start_run("theory", {"seed": params.seed, "quick": quick},
                       run_tags("theory", "-", source="ganlab theory"), experiment=THEORY)
    log_metrics(run_id, [{"step": 0, **m}])
    log_artifacts(run_id, sorted(out.glob("*.png")), "theory")
    set_terminated(run_id)
    echo(f"theory: |D_trained - D*| max {m['dstar_max_abs_err']:.4f}; "
         f"-log 4 + 2 JSD - V(trained D) {m['v_trained_gap_to_formula']:.2e} "
         f"(tolerance {m['v_tolerance']:g}); "
         f"non-saturating identity max diff {m['ns_identity_max_abs_diff']:.1e}; "
         f"JSD at max shift {m['jsd_at_max_shift']:.6f} (log 2 = 0.693147); "
         f"saturating/non-saturating final gradient "
         f"{m['grad_saturating_final']:.2e}/{m['grad_nonsaturating_final']:.2e}")
    return m
