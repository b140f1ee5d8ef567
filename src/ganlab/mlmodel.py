"""The generator as an MLflow model: logged, registered, and loaded back to make images.

Format: `torch.export` ("pt2", MLflow's default for PyTorch). It stores the traced graph and
weights, so `mlflow.pytorch.load_model` needs neither this repo's classes nor pickle (which
MLflow 3 refuses to load unless MLFLOW_ALLOW_PICKLE_DESERIALIZATION is set).

Requirements are passed explicitly: MLflow would otherwise infer them by loading the model in
a subprocess and resolving packages, which costs seconds and may reach for the network.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganlab.util import GanlabError, atomic_path

ARTIFACT = "generator"


def registered_name(variant: str) -> str:
    return f"ganlab-{variant}"


def signature(latent_dim: int, image_shape: tuple[int, ...]):
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    f32 = np.dtype(np.float32)
    return ModelSignature(
        inputs=Schema([TensorSpec(f32, (-1, latent_dim), "z")]),
        outputs=Schema([TensorSpec(f32, (-1, *image_shape), "image")]),
    )


def pip_requirements() -> list[str]:
    import mlflow

    return [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}",
            f"mlflow=={mlflow.__version__}"]


def log_generator(run_id: str, generator: torch.nn.Module, variant: str, latent_dim: int,
                  image_shape: tuple[int, ...], tags: dict[str, str] | None = None) -> dict:
    """Log `generator` (eval mode, CPU) as run `run_id`'s model `generator` and register it as
    `ganlab-<variant>` (a new version). Returns the version and the seconds it took."""
    import mlflow
    import mlflow.pytorch

    from ganlab import tracking

    _, exp_id = tracking.client()  # points mlflow at the project store
    # Without an active fluent run MLflow files the logged model under the *active* experiment
    # (Default), where `runs:/<id>/generator` cannot find it: name the run's experiment.
    mlflow.set_experiment(experiment_id=exp_id)
    t0 = time.perf_counter()
    g = copy.deepcopy(generator).cpu().eval()
    # The example fixes nothing but the latent width: batch stays dynamic (two rows, since
    # torch.export pins a size-1 dimension), values are a seeded draw, never shown.
    example = np.random.default_rng(0).standard_normal((2, latent_dim)).astype(np.float32)
    info = mlflow.pytorch.log_model(
        g, name=ARTIFACT, run_id=run_id, signature=signature(latent_dim, image_shape),
        input_example=example, pip_requirements=pip_requirements(),
        registered_model_name=registered_name(variant), serialization_format="pt2",
        validate_serving_input=False, tags=tags or {},
    )
    return {"model_uri": info.model_uri, "version": int(info.registered_model_version or 0),
            "seconds": time.perf_counter() - t0}


def load(model_uri: str) -> tuple[torch.nn.Module, int]:
    """The generator behind `model_uri` (models:/, runs:/ or a local model folder) and its
    latent width, read from the model's signature."""
    import mlflow.pytorch
    from mlflow.exceptions import MlflowException
    from mlflow.models import get_model_info

    try:
        info = get_model_info(model_uri)
        g = mlflow.pytorch.load_model(model_uri, map_location="cpu")
    except (MlflowException, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GanlabError(f"--model {model_uri}: cannot load an MLflow model ({first})") from None
    if info.signature is None or not info.signature.inputs.is_tensor_spec():
        raise GanlabError(f"--model {model_uri}: has no latent->image tensor signature")
    shape = info.signature.inputs.inputs[0].shape
    return g, int(shape[-1])


@torch.no_grad()
def generate(model_uri: str, n: int, seed: int = 0) -> torch.Tensor:
    """n images in [-1, 1] from latents drawn with `seed`, in batches of 256."""
    g, latent_dim = load(model_uri)
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, latent_dim, generator=gen)
    return torch.cat([g(z[i : i + 256]) for i in range(0, n, 256)]) if n else z.new_zeros(0)


def write_images(images: torch.Tensor, out: Path, nrow: int) -> None:
    """A PNG grid for .png, the uint8 (N, C, H, W) array for .npz."""
    out = Path(out)
    if out.suffix == ".npz":
        arr = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
        with atomic_path(out, suffix=".npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, images=arr)
        return
    from ganlab.sample import save_grid

    save_grid(images, out, nrow=nrow)


def check_output(out: Path, n: int) -> Any:
    if Path(out).suffix not in (".png", ".npz"):
        raise GanlabError(f"-o {out}: must end in .png (a grid) or .npz (the uint8 images)")
    if n < 1:
        raise GanlabError(f"-n {n}: must be at least 1")
