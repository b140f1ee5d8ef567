"""A tiny MLflow store made by the real stages (no DVC): two variants, one MLP and one conv
net (BatchNorm in G), trained, sampled and evaluated; plus one toy-suite variant. Shared by
the MLflow tests and the browser test."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import tiny_params_dict, write_params

VARIANTS = {"gan": {"loss": "nonsaturating"}, "dcgan": {"arch": "dcgan", "width": 8}}


def tiny_raw() -> dict:
    raw = tiny_params_dict()
    raw["variants"] = dict(VARIANTS)
    return raw


@contextmanager
def project_env(root: Path):
    """cwd = root, the store in root/mlflow.db (as the `in_tmp` fixture, but for any scope)."""
    old_cwd, old_env = Path.cwd(), {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    os.chdir(root)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    os.environ.pop("DVC_ROOT", None)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def build_project(root: Path, variants: dict, *, quality: bool = False, toy_variant: str = "") -> Path:
    """A project at root whose stages ran once, in `dvc repro`'s order, without DVC: prepare,
    judge, floor; per variant train, (quality), sample, evaluate; then the toy suite of one
    variant when named. The variants' params are the tiny ones with `variants` replaced."""
    from ganlab.cli import toy
    from ganlab.config.params import parse_params
    from ganlab.stages.evaluate import run_evaluate
    from ganlab.stages.floor import run_floor
    from ganlab.stages.judge import run_judge
    from ganlab.stages.prepare import run_prepare
    from ganlab.stages.quality import run_quality
    from ganlab.stages.sample import run_sample
    from ganlab.stages.train import run_train

    root.mkdir(parents=True, exist_ok=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    raw = tiny_params_dict()
    raw["variants"] = dict(variants)
    write_params(root / "params.yaml", raw)
    params = parse_params(raw)
    quiet = lambda *_: None  # noqa: E731
    with project_env(root):
        run_prepare(params)
        run_judge(params)
        run_floor(params)
        for v in variants:
            run_train(params, v, echo=quiet)
            if quality:
                run_quality(params, v, echo=quiet)
            run_sample(params, v, echo=quiet)
            run_evaluate(params, v, echo=quiet)
        if toy_variant:
            toy(toy_variant, root / "params.yaml")
    return root


def build_tiny_store(root: Path) -> Path:
    return build_project(root, VARIANTS, toy_variant="gan")
