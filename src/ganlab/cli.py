"""`ganlab`: one thin command per pipeline stage (what dvc.yaml calls), plus `ui`.

Heavy imports (torch, mlflow) happen inside the commands so `ganlab --help` is instant.
Every command validates params.yaml first; a user error prints one line and exits 2
before any output is touched.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(
    help="ganlab: a reproducible laboratory for generative adversarial networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

PARAMS = typer.Option(Path("params.yaml"), "--params", help="params file to read")


def _errors_as_one_line(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ganlab.util import GanlabError

        try:
            return fn(*args, **kwargs)
        except GanlabError as e:
            typer.echo(f"ganlab: error: {e}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _setup(params_path: Path, variant: str | None = None):
    from ganlab.params import load_params

    params = load_params(params_path)
    if variant is not None:
        params.variant(variant)  # unknown variant -> error listing the known ones
    import torch

    torch.use_deterministic_algorithms(True, warn_only=True)
    return params


@app.command()
@_errors_as_one_line
def prepare(params_path: Path = PARAMS) -> None:
    """Load the dataset named in params and write data/prepared/{train,test}.npz."""
    params = _setup(params_path)
    from ganlab.prepare import run_prepare
    from ganlab.tracking import client

    meta = run_prepare(params)
    client()  # create/upgrade the MLflow store now, before parallel stages could race on it
    typer.echo(f"prepare: {meta['n_train']} train / {meta['n_test']} test images "
               f"of {meta['dataset']} {tuple(meta['image_shape'])} in data/prepared/")


@app.command()
@_errors_as_one_line
def judge(params_path: Path = PARAMS) -> None:
    """Train the judge classifier; write its accuracy and the real-vs-real floor."""
    params = _setup(params_path)
    from ganlab.judge import run_judge

    m = run_judge(params)
    typer.echo(f"judge: held-out accuracy {m['judge_test_accuracy']:.4f}; "
               f"floor fid_judge {m['fid_judge']:.3f}")


@app.command()
@_errors_as_one_line
def train(variant: str, params_path: Path = PARAMS) -> None:
    """Train VARIANT (resumes from its checkpoint if one for the same config exists)."""
    params = _setup(params_path, variant)
    from ganlab.train import run_train

    run_train(params, variant, echo=typer.echo)


@app.command()
@_errors_as_one_line
def sample(variant: str, params_path: Path = PARAMS) -> None:
    """Write VARIANT's sample grid, evaluation samples and latent interpolation."""
    params = _setup(params_path, variant)
    from ganlab.sample import run_sample

    run_sample(params, variant, echo=typer.echo)


@app.command()
@_errors_as_one_line
def evaluate(variant: str, params_path: Path = PARAMS) -> None:
    """Score VARIANT's samples in the judge's feature space; log into its MLflow run."""
    params = _setup(params_path, variant)
    from ganlab.evaluate import run_evaluate

    run_evaluate(params, variant, echo=typer.echo)


@app.command()
@_errors_as_one_line
def report(params_path: Path = PARAMS) -> None:
    """Write metrics/report.md comparing every variant with the real-data floor."""
    params = _setup(params_path)
    from ganlab.report import run_report
    from ganlab.tracking import tracking_uri

    run_report(params, echo=typer.echo)
    typer.echo(f"MLflow store: {tracking_uri()}  (browse: ganlab ui)")


@app.command()
@_errors_as_one_line
def toy(variant: str, params_path: Path = PARAMS) -> None:
    """Mode coverage: VARIANT's loss and penalties on every toy.datasets mixture x toy.seeds."""
    params = _setup(params_path, variant)
    import torch

    from ganlab import tracking
    from ganlab.toy_suite import run_toy, toy_variant_settings
    from ganlab.util import write_json

    # Nets this small gain nothing from a second intra-op thread, and lose 50x when the
    # other core is busy (measured); one thread per toy stage.
    torch.set_num_threads(1)
    v = params.variants[variant]
    out = Path("metrics/toy") / variant
    summary: dict[str, float] = {"toy_runs": 0}
    if toy_variant_settings(dataclasses.asdict(v), params.toy) is None:
        typer.echo(f"toy {variant}: no toy run ({v.arch} nets need images)")
        out.mkdir(parents=True, exist_ok=True)
    runs_here = toy_variant_settings(dataclasses.asdict(v), params.toy) is not None
    for dataset in params.toy.datasets if runs_here else ():
        m = run_toy(dataset, variant, v, list(params.toy.seeds), params.toy, out, log=typer.echo)
        summary["toy_runs"] += len(params.toy.seeds)
        summary.update({f"{dataset}.{k}": x for k, x in m.items() if not k.startswith("seed")})
        tags = {**tracking.run_tags(variant, dataset), "suite": "toy"}
        tags["mlflow.runName"] = f"toy-{dataset}-{variant}"
        run_id = tracking.start_run(tags["mlflow.runName"], {"dataset": dataset, "variant": variant,
                                    "seeds": ",".join(map(str, params.toy.seeds))}, tags)
        tracking.log_metrics(run_id, [{"step": 0, **{f"toy/{k}": float(x) for k, x in m.items()}}])
        tracking.log_artifacts(run_id, [out / dataset / f"{variant}.png"], "toy")
        tracking.set_terminated(run_id)
    write_json(Path("metrics/toy") / f"{variant}.json", summary)


@app.command()
@_errors_as_one_line
def theory(
    params_path: Path = PARAMS,
    out: Path = typer.Option(Path("metrics/theory"), help="output folder"),
    quick: bool = typer.Option(False, help="fewer training steps (for tests)"),
) -> None:
    """The divergence lab: check D*, max_D V = -log 4 + 2 JSD, and the vanishing gradient."""
    params = _setup(params_path)
    from ganlab.theory import run_theory
    from ganlab.tracking import log_artifacts, log_metrics, run_tags, set_terminated, start_run

    m = run_theory(out, seed=params.seed, quick=quick)
    run_id = start_run("theory", {"seed": params.seed, "quick": quick}, run_tags("theory", "-"))
    log_metrics(run_id, [{"step": 0, **m}])
    log_artifacts(run_id, sorted(out.glob("*.png")), "theory")
    set_terminated(run_id)
    typer.echo(f"theory: |D_trained - D*| max {m['dstar_max_abs_err']:.4f}; "
               f"identity max diff {m['identity_max_abs_diff']:.2e}; "
               f"JSD at max shift {m['jsd_at_max_shift']:.6f} (log 2 = 0.693147); "
               f"saturating/non-saturating final gradient "
               f"{m['grad_saturating_final']:.2e}/{m['grad_nonsaturating_final']:.2e}")


@app.command()
@_errors_as_one_line
def ui(
    port: int = typer.Option(5000, help="port on 127.0.0.1"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the command only"),
) -> None:
    """Open the MLflow UI on the project's store, bound to 127.0.0.1."""
    from ganlab.tracking import artifact_root, tracking_uri

    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri(),
           "--default-artifact-root", artifact_root(), "--host", "127.0.0.1",
           "--port", str(port)]
    typer.echo(f"MLflow UI: http://127.0.0.1:{port}  (store {tracking_uri()})")
    if dry_run:
        typer.echo(" ".join(cmd))
        return
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.execv(sys.executable, cmd)


if __name__ == "__main__":  # pragma: no cover
    app()
