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
    """One line and exit 2 for a user error; a pipeline stage runs against its code
    manifest (ganlab.runtime.code.guard: refused if stale, checked for missed imports)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ganlab.runtime.code import guard
        from ganlab.util import GanlabError

        try:
            with guard(fn.__name__):
                return fn(*args, **kwargs)
        except GanlabError as e:
            typer.echo(f"ganlab: error: {e}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _setup(params_path: Path, variant: str | None = None):
    from ganlab.config.params import load_params

    params = load_params(params_path)
    if variant is not None:
        params.variant(variant)  # unknown variant -> error listing the known ones
    from ganlab.util import deterministic_algorithms

    deterministic_algorithms()
    return params


@app.command()
@_errors_as_one_line
def code() -> None:
    """Write data/code/<command>.txt: the source files (and hashes) each pipeline stage's
    command can run; each stage depends on its own (ganlab.runtime.code says why)."""
    from ganlab.stages.code import run_code

    run_code(echo=typer.echo)


@app.command()
@_errors_as_one_line
def prepare(params_path: Path = PARAMS) -> None:
    """Load the dataset named in params and write data/prepared/{train,test}.npz."""
    params = _setup(params_path)
    from ganlab.stages.prepare import run_prepare
    from ganlab.tracking.store import client

    # create/upgrade the MLflow store now, before parallel stages could race on it (and before
    # any data is written: a store that cannot be used is refused first)
    client()
    meta = run_prepare(params)
    typer.echo(f"prepare: {meta['n_train']} train / {meta['n_test']} test images "
               f"of {meta['dataset']} {tuple(meta['image_shape'])} in data/prepared/")


@app.command()
@_errors_as_one_line
def judge(params_path: Path = PARAMS) -> None:
    """Train the judge classifier on data/prepared; write its held-out accuracy."""
    params = _setup(params_path)
    from ganlab.stages.judge import run_judge

    m = run_judge(params)
    typer.echo(f"judge: held-out accuracy {m['judge_test_accuracy']:.4f}")


@app.command()
@_errors_as_one_line
def floor(params_path: Path = PARAMS) -> None:
    """Score the real-vs-real floor (held-out images against train) with the judge."""
    params = _setup(params_path)
    from ganlab.stages.floor import run_floor

    m = run_floor(params)
    typer.echo(f"floor: fid_judge {m['fid_judge']:.3f} on N={m['n_compared']}")


@app.command("prepare-uci")
@_errors_as_one_line
def prepare_uci(params_path: Path = PARAMS) -> None:
    """Write data/uci/{train,test}.npz: scikit-learn's UCI 8x8 digits at 28x28 (CycleGAN's B)."""
    params = _setup(params_path)
    from ganlab.stages.prepare_uci import run_prepare_uci

    meta = run_prepare_uci(params)
    typer.echo(f"prepare-uci: {meta['n_train']} train / {meta['n_test']} test UCI digits "
               f"{tuple(meta['image_shape'])} in data/uci/")


@app.command("judge-uci")
@_errors_as_one_line
def judge_uci(params_path: Path = PARAMS) -> None:
    """Train the UCI digits' judge; write its held-out accuracy."""
    params = _setup(params_path)
    from ganlab.runtime.paths import UCI_DIR, UCI_JUDGE_PATH
    from ganlab.stages.judge import run_judge

    m = run_judge(params, UCI_DIR, UCI_JUDGE_PATH, suffix="_uci")
    typer.echo(f"judge-uci: held-out accuracy {m['judge_test_accuracy']:.4f}")


@app.command()
@_errors_as_one_line
def train(variant: str, params_path: Path = PARAMS) -> None:
    """Train VARIANT (resumes from its checkpoint if one for the same config exists).

    Under torchrun, data-parallel over its processes; with `distributed.nproc` > 1 and no
    torchrun around it, re-runs itself under `torchrun --standalone` (README "Scaling out")."""
    params = _setup(params_path, variant)
    from ganlab.runtime.distributed import torchrun_argv, under_torchrun

    if params.distributed.nproc > 1 and not under_torchrun():
        argv = torchrun_argv(params.distributed.nproc, ["train", variant, "--params", str(params_path)])
        typer.echo(f"train {variant}: {' '.join(argv[1:])}")
        sys.stdout.flush()
        os.execv(sys.executable, argv)
    from ganlab.stages.train import run_train_all

    run_train_all(params, variant, echo=typer.echo)


@app.command()
@_errors_as_one_line
def quality(variant: str, params_path: Path = PARAMS) -> None:
    """Score VARIANT's training snapshots in the judge's feature space (quality vs compute)."""
    params = _setup(params_path, variant)
    from ganlab.stages.quality import run_quality

    run_quality(params, variant, echo=typer.echo)


@app.command()
@_errors_as_one_line
def sample(variant: str, params_path: Path = PARAMS) -> None:
    """Write VARIANT's sample grid, evaluation samples and latent interpolation."""
    params = _setup(params_path, variant)
    from ganlab.stages.sample import run_sample_all

    run_sample_all(params, variant, echo=typer.echo)


@app.command()
@_errors_as_one_line
def evaluate(variant: str, params_path: Path = PARAMS) -> None:
    """Score VARIANT's samples in the judge's feature space; log into its MLflow run."""
    params = _setup(params_path, variant)
    from ganlab.stages.evaluate import run_evaluate

    run_evaluate(params, variant, echo=typer.echo)


@app.command()
@_errors_as_one_line
def score(
    path: Path = typer.Argument(..., help=".npz with a uint8 `images` array (N, C, H, W), as "
                                "samples.npz, or a folder of PNG files (read in name order)"),
    out: Path = typer.Option(Path("score.json"), "-o", "--out", help="JSON file to write"),
    as_variant: str | None = typer.Option(None, "--as", help="draw KID's random subsets as "
                                          "`evaluate VARIANT` does: VARIANT's own samples.npz "
                                          "then scores exactly metrics/eval/VARIANT.json"),
    log: bool = typer.Option(False, "--log", help="also log an MLflow run (experiment ganlab)"),
    params_path: Path = PARAMS,
) -> None:
    """Score any images as evaluate scores a variant's samples (same metrics, same N), beside
    the floor, in this project's judge feature space; print the report's table row."""
    params = _setup(params_path)
    from ganlab.stages.score import run_score

    run_score(params, path, out, as_variant, log, echo=typer.echo)


@app.command()
@_errors_as_one_line
def report(params_path: Path = PARAMS) -> None:
    """Write metrics/report.md comparing every variant with the real-data floor."""
    params = _setup(params_path)
    from ganlab.stages.report import run_report
    from ganlab.tracking.store import tracking_uri

    run_report(params, echo=typer.echo)
    typer.echo(f"MLflow store: {tracking_uri()}  (browse: ganlab ui)")


@app.command()
@_errors_as_one_line
def toy(variant: str, params_path: Path = PARAMS) -> None:
    """Mode coverage: VARIANT's loss and penalties on every toy.datasets mixture x toy.seeds."""
    from ganlab.stages.toy import run_toy, skip_toy

    if skip_toy(params_path, variant, echo=typer.echo):
        return
    run_toy(_setup(params_path, variant), variant, echo=typer.echo)


@app.command()
@_errors_as_one_line
def stacked(variant: str, params_path: Path = PARAMS) -> None:
    """Stacked MNIST (opt-in, stacked/dvc.yaml): train stacked.variants.VARIANT on every
    stacked.seeds and score 1,000-mode coverage with the judge."""
    params = _setup(params_path)
    from ganlab.stages.stacked import run_stacked

    run_stacked(params, variant, echo=typer.echo)


@app.command("stacked-floor")
@_errors_as_one_line
def stacked_floor(params_path: Path = PARAMS) -> None:
    """Stacked MNIST's floor: stacked.n_floor real stacks scored as the generators are."""
    params = _setup(params_path)
    from ganlab.stages.stacked_floor import run_stacked_floor

    run_stacked_floor(params, echo=typer.echo)


@app.command("stacked-report")
@_errors_as_one_line
def stacked_report(params_path: Path = PARAMS) -> None:
    """Stacked MNIST's table (metrics/stacked_report.md): every stacked.variants entry beside
    PacGAN's quoted rows, and the floor."""
    params = _setup(params_path)
    from ganlab.stages.stacked_report import run_stacked_report

    run_stacked_report(params, echo=typer.echo)


@app.command()
@_errors_as_one_line
def theory(
    params_path: Path = PARAMS,
    out: Path = typer.Option(Path("metrics/theory"), help="output folder"),
    quick: bool = typer.Option(False, help="fewer training steps (for tests)"),
) -> None:
    """The divergence lab: D*, max_D V = -log 4 + 2 JSD, vanishing gradients, the NS loss at D*."""
    params = _setup(params_path)
    from ganlab.stages.theory import run_theory

    run_theory(params, out, quick, echo=typer.echo)


@app.command()
@_errors_as_one_line
def ui(
    port: int = typer.Option(5000, help="port on 127.0.0.1"),
    open_browser: bool = typer.Option(False, "--open", help="open the runs page in a browser"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the command only"),
) -> None:
    """Serve the MLflow UI on the project's store (127.0.0.1) and print the training-runs URL."""
    from ganlab.tracking.store import TOY, artifact_root, experiment_url, is_server, tracking_uri

    if is_server(tracking_uri()):  # a team server (MLFLOW_TRACKING_URI) already serves its UI
        typer.echo(f"MLflow UI: {tracking_uri()}  (the tracking server's own UI)")
        return
    from ganlab.tracking.ui import check_port_free

    if not dry_run:
        check_port_free(port)  # a busy port is refused before any URL is printed
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
    from ganlab.tracking.ui import serve_and_open

    code = serve_and_open(cmd, url, port)  # the server's whole process group ends with this one
    if code:
        raise typer.Exit(code)


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
    from ganlab.tracking import generate as mlmodel
    from ganlab.util import GanlabError

    mlmodel.check_output(out, n)
    if nrow is not None and nrow < 1:
        raise GanlabError(f"--nrow {nrow}: must be at least 1")
    inputs = mlmodel.read_images(input_file) if input_file is not None else None
    source = ("--tracking-uri" if tracking_uri else
              "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "project store")
    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from ganlab.tracking.store import tracking_uri as store_uri

    mlmodel.check_store(store_uri(), source, model)  # before MLflow touches (or creates) it
    import mlflow

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
