"""`ganlab`: one thin command per pipeline stage (what dvc.yaml calls), plus `ui`.

Heavy imports (torch, mlflow) happen inside the commands so `ganlab --help` is instant.
Every command validates params.yaml first; a user error prints one line and exits 2
before any output is touched.
"""

from __future__ import annotations

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
    from ganlab.util import deterministic_algorithms

    deterministic_algorithms()
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


@app.command("prepare-uci")
@_errors_as_one_line
def prepare_uci(params_path: Path = PARAMS) -> None:
    """Write data/uci/{train,test}.npz: scikit-learn's UCI 8x8 digits at 28x28 (CycleGAN's B)."""
    params = _setup(params_path)
    from ganlab.data.uci import UCI_DIR, run_prepare_uci

    meta = run_prepare_uci(params)
    typer.echo(f"prepare-uci: {meta['n_train']} train / {meta['n_test']} test UCI digits "
               f"{tuple(meta['image_shape'])} in {UCI_DIR}/")


@app.command("judge-uci")
@_errors_as_one_line
def judge_uci(params_path: Path = PARAMS) -> None:
    """Train the UCI digits' judge; write its accuracy and the UCI real-vs-real floor."""
    params = _setup(params_path)
    from ganlab.data.uci import UCI_DIR
    from ganlab.judge import run_judge
    from ganlab.judge_net import UCI_JUDGE_PATH

    m = run_judge(params, UCI_DIR, UCI_JUDGE_PATH, suffix="_uci")
    typer.echo(f"judge-uci: held-out accuracy {m['judge_test_accuracy']:.4f}; "
               f"floor fid_judge {m['fid_judge']:.3f}")


@app.command()
@_errors_as_one_line
def train(variant: str, params_path: Path = PARAMS) -> None:
    """Train VARIANT (resumes from its checkpoint if one for the same config exists).

    Under torchrun, data-parallel over its processes; with `distributed.nproc` > 1 and no
    torchrun around it, re-runs itself under `torchrun --standalone` (README "Scaling out")."""
    params = _setup(params_path, variant)
    from ganlab.distributed import torchrun_argv, under_torchrun

    if params.distributed.nproc > 1 and not under_torchrun():
        argv = torchrun_argv(params.distributed.nproc, ["train", variant, "--params", str(params_path)])
        typer.echo(f"train {variant}: {' '.join(argv[1:])}")
        sys.stdout.flush()
        os.execv(sys.executable, argv)
    from ganlab.train import run_train

    for seed in params.seeds:  # one model per training seed, the first one the reference
        run_train(params, variant, echo=typer.echo, seed=seed)


@app.command()
@_errors_as_one_line
def sample(variant: str, params_path: Path = PARAMS) -> None:
    """Write VARIANT's sample grid, evaluation samples and latent interpolation."""
    params = _setup(params_path, variant)
    from ganlab.sample import generator_path, run_sample

    for seed in params.seeds:  # every seed's generator must exist before anything is written
        generator_path(params, variant, seed)
    for seed in params.seeds:
        run_sample(params, variant, echo=typer.echo, seed=seed)


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
    from ganlab.params import load_params
    from ganlab.toy_params import toy_skip_reason
    from ganlab.util import write_json

    v = load_params(params_path).variant(variant)
    skipped = toy_skip_reason(v.arch, v.kind)
    if skipped:  # decided before torch is imported: these stages cost a process start only
        typer.echo(f"toy {variant}: no toy run ({skipped})")
        (Path("metrics/toy") / variant).mkdir(parents=True, exist_ok=True)
        write_json(Path("metrics/toy") / f"{variant}.json", {"toy_runs": 0})
        return
    params = _setup(params_path, variant)
    import time

    import torch

    from ganlab import tracking
    from ganlab.toy_suite import forked_workers, members_of, run_toy_variant

    # Nets this small gain nothing from a second intra-op thread, and lose 50x when the
    # other core is busy (measured); one thread per toy stage, set before any torch work,
    # so the toy workers can be forked instead of spawned.
    torch.set_num_threads(1)
    v = params.variants[variant]
    cfg = params.toy
    out = Path("metrics/toy") / variant
    summary: dict[str, float] = {"toy_runs": 0}
    t0 = time.perf_counter()
    with forked_workers():
        cells = run_toy_variant(variant, v, cfg, out, log=typer.echo)
    seconds = time.perf_counter() - t0
    # no wall time in the DVC metrics file: the same params must give the same bytes
    summary.update(toy_runs=len(members_of(cfg)), g_steps=cfg.g_steps, n_critic=v.n_critic)
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
        "batch_size": cfg.batch_size, "width": cfg.width}, tags, experiment=tracking.TOY)
    tracking.log_metrics(run_id, [{"step": 0, "toy/seconds": seconds,
                                   **{f"toy/{k}": float(x) for k, x in summary.items()}}])
    tracking.log_artifacts(run_id, [out / d / "progress.png" for d in cells]
                           + [out / d / "scores.json" for d in cells], "toy")
    tracking.set_terminated(run_id)
    write_json(Path("metrics/toy") / f"{variant}.json", summary)
    typer.echo(f"toy {variant}: {summary['toy_runs']} trainings of {cfg.g_steps} G steps in {seconds:.1f} s")


@app.command()
@_errors_as_one_line
def theory(
    params_path: Path = PARAMS,
    out: Path = typer.Option(Path("metrics/theory"), help="output folder"),
    quick: bool = typer.Option(False, help="fewer training steps (for tests)"),
) -> None:
    """The divergence lab: D*, max_D V = -log 4 + 2 JSD, vanishing gradients, the NS loss at D*."""
    params = _setup(params_path)
    from ganlab.theory import run_theory
    from ganlab.tracking import THEORY, log_artifacts, log_metrics, run_tags, set_terminated, start_run

    m = run_theory(out, seed=params.seed, quick=quick)
    run_id = start_run("theory", {"seed": params.seed, "quick": quick},
                       run_tags("theory", "-", source="ganlab theory"), experiment=THEORY)
    log_metrics(run_id, [{"step": 0, **m}])
    log_artifacts(run_id, sorted(out.glob("*.png")), "theory")
    set_terminated(run_id)
    typer.echo(f"theory: |D_trained - D*| max {m['dstar_max_abs_err']:.4f}; "
               f"-log 4 + 2 JSD - V(trained D) {m['v_trained_gap_to_formula']:.2e} "
               f"(tolerance {m['v_tolerance']:g}); "
               f"non-saturating identity max diff {m['ns_identity_max_abs_diff']:.1e}; "
               f"JSD at max shift {m['jsd_at_max_shift']:.6f} (log 2 = 0.693147); "
               f"saturating/non-saturating final gradient "
               f"{m['grad_saturating_final']:.2e}/{m['grad_nonsaturating_final']:.2e}")


@app.command()
@_errors_as_one_line
def ui(
    port: int = typer.Option(5000, help="port on 127.0.0.1"),
    open_browser: bool = typer.Option(False, "--open", help="open the runs page in a browser"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the command only"),
) -> None:
    """Serve the MLflow UI on the project's store (127.0.0.1) and print the training-runs URL."""
    from ganlab.tracking import TOY, artifact_root, experiment_url, is_server, tracking_uri

    if is_server(tracking_uri()):  # a team server (MLFLOW_TRACKING_URI) already serves its UI
        typer.echo(f"MLflow UI: {tracking_uri()}  (the tracking server's own UI)")
        return
    # the registry is the project store's too (not an MLFLOW_REGISTRY_URI left in the shell)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri(),
           "--registry-store-uri", tracking_uri(),
           "--default-artifact-root", artifact_root(), "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1"]  # one local user; each worker is ~230 MB
    url = experiment_url(port)
    typer.echo(f"MLflow UI: {url}  (image GAN training runs; store {tracking_uri()})")
    typer.echo(f"           toy suite: {experiment_url(port, TOY)}")
    typer.echo(f"           registered models: http://127.0.0.1:{port}/#/models")
    if dry_run:
        typer.echo(" ".join(cmd))
        return
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # The job runner (7 huey worker processes) serves GenAI judges and scorers; nothing here.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    if not open_browser:
        os.execv(sys.executable, cmd)
    import subprocess

    server = subprocess.Popen(cmd)
    try:
        from ganlab.ui import open_when_ready

        open_when_ready(url, port, server)
        server.wait()
    except KeyboardInterrupt:
        server.terminate()
        server.wait()


@app.command()
@_errors_as_one_line
def generate(
    model: str = typer.Option(..., "--model", help="models:/ganlab-V/latest, runs:/<id>/generator "
                              "or a local MLflow model folder"),
    n: int = typer.Option(64, "-n", help="number of images (cycle: at most this many of --input)"),
    out: Path = typer.Option(Path("grid.png"), "-o", "--out", help=".png grid or .npz uint8 array"),
    seed: int = typer.Option(0, help="seed of the latent draw"),
    nrow: int | None = typer.Option(None, help="images per grid row (default 8; a conditional "
                                       "model without --label: its class count, a digit per column)"),
    label: int | None = typer.Option(None, "--label", help="conditional models: class K for "
                                        "all images (default: classes 0, 1, ..., C-1 in turn)"),
    input_file: Path | None = typer.Option(None, "--input", help="cycle models (required): "
                                              "the images to translate, an .npz with a uint8 "
                                              "`images` (N, 1, 28, 28) array (as -o x.npz writes) "
                                              "or a grayscale .png, one 28x28 image or a grid"),
    tracking_uri: str = typer.Option("", "--tracking-uri", help="MLflow store "
                                     "(default: MLFLOW_TRACKING_URI, else the project's)"),
) -> None:
    """Generate images from a logged generator; needs only the MLflow store, no project files.

    Unconditional models draw n latents; conditional ones also take a class
    per image (--label); cycle models translate --input images (ganlab-<V>:
    MNIST -> UCI, ganlab-<V>-reverse: UCI -> MNIST)."""
    from ganlab import mlmodel
    from ganlab.util import GanlabError

    mlmodel.check_output(out, n)
    if nrow is not None and nrow < 1:
        raise GanlabError(f"--nrow {nrow}: must be at least 1")
    inputs = mlmodel.read_images(input_file) if input_file is not None else None
    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    from ganlab.tracking import tracking_uri as store_uri

    mlflow.set_tracking_uri(store_uri())
    mlflow.set_registry_uri(store_uri())  # models:/ names resolve in the project's registry
    spec = mlmodel.describe(model)
    mlmodel.check_request(spec, label, inputs)  # before the weights load
    g, spec = mlmodel.load(model, spec)
    images = mlmodel.run_model(g, spec, n, seed=seed, label=label, inputs=inputs)
    if nrow is None:
        nrow = spec.n_classes if spec.kind == "conditional" and label is None else 8
    mlmodel.write_images(images, out, nrow=nrow)
    what = {"conditional": f" (label {label})" if label is not None else
            f" (labels 0..{spec.n_classes - 1} in turn)",
            "cycle": f" translating {input_file}"}.get(spec.kind, "")
    typer.echo(f"generate: {len(images)} images from {model}{what} -> {out}")


if __name__ == "__main__":  # pragma: no cover
    app()
