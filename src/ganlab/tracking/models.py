"""The generators as MLflow models: logged, registered, and loaded back to make images.

Format: `torch.export` ("pt2", MLflow's default for PyTorch). It stores the traced graph and
weights, so `mlflow.pytorch.load_model` needs neither this repo's classes nor pickle (which
MLflow 3 refuses to load unless MLFLOW_ALLOW_PICKLE_DESERIALIZATION is set).

One model per kind of generator, each a single float32 tensor in and the image out (a
PyTorch MLflow model takes one input tensor):
- unconditional: `z` (-1, latent_dim) -> `image`, registered as `ganlab-<variant>`;
- conditional: `z_label` (-1, latent_dim + 1) -> `image`: z, then the class as a float in the
  last column (rounded to the integer label inside the model), `ganlab-<variant>`;
- cycle: `image` (-1, C, H, W) -> `image`, both directions: MNIST -> UCI as `ganlab-<variant>`
  (artifact `generator`), UCI -> MNIST as `ganlab-<variant>-reverse` (`generator_reverse`).
Each model's metadata (MLmodel `metadata:`, `mlflow.models.get_model_info(uri).metadata`)
says its `kind` and what a caller needs without this repo: `latent_dim` and `n_classes`, or
the `source`/`target` domains. Models logged before the metadata existed read as unconditional.

Requirements are passed explicitly: MLflow would otherwise infer them by loading the model in
a subprocess and resolving packages, which costs seconds and may reach for the network.
"""

from __future__ import annotations

import contextlib
import copy
import time

import numpy as np
import torch
from torch import nn

ARTIFACT = "generator"
REVERSE_ARTIFACT = "generator_reverse"
# the cycle kind's domains (train_cycle.py): A = MNIST, B = UCI digits upsampled to 28x28
DOMAIN_A, DOMAIN_B = "mnist", "uci"


def registered_name(variant: str, reverse: bool = False) -> str:
    return f"ganlab-{variant}" + ("-reverse" if reverse else "")




def tensor_signature(name_in: str, shape_in: tuple[int, ...], shape_out: tuple[int, ...]):
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    f32 = np.dtype(np.float32)
    return ModelSignature(
        inputs=Schema([TensorSpec(f32, (-1, *shape_in), name_in)]),
        outputs=Schema([TensorSpec(f32, (-1, *shape_out), "image")]),
    )


def signature(latent_dim: int, image_shape: tuple[int, ...]):
    return tensor_signature("z", (latent_dim,), image_shape)


def pip_requirements() -> list[str]:
    import mlflow

    return [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}",
            f"mlflow=={mlflow.__version__}"]


@contextlib.contextmanager
def _no_requirement_check():
    """Skip MLflow's check that this environment satisfies the model's pip pins while logging.
    The pins are read off this very process (`pip_requirements`), so the check cannot find
    a mismatch; it costs 1.2 s of every training stage, mapping every installed package's
    modules (measured with cProfile). Patched only where MLflow calls it, only inside the
    block; an MLflow without that name is left alone."""
    import mlflow.utils.environment as env

    original = getattr(env, "warn_dependency_requirement_mismatches", None)
    if original is None:
        yield
        return
    env.warn_dependency_requirement_mismatches = lambda requirements: None
    try:
        yield
    finally:
        env.warn_dependency_requirement_mismatches = original


def log_model(run_id: str, module: nn.Module, name: str, registered: str, sig, example: np.ndarray,
         metadata: dict, tags: dict[str, str] | None) -> dict:
    """Log `module` (eval mode, CPU) as run `run_id`'s model `name`, registered as a new
    version of `registered`."""
    import mlflow
    import mlflow.pytorch

    from ganlab.tracking import store as tracking

    _, exp_id = tracking.client()  # points mlflow at the project store
    # Without an active fluent run MLflow files the logged model under the *active* experiment
    # (Default), where `runs:/<id>/generator` cannot find it: name the run's experiment.
    mlflow.set_experiment(experiment_id=exp_id)
    t0 = time.perf_counter()
    with _no_requirement_check():
        info = mlflow.pytorch.log_model(
            copy.deepcopy(module).cpu().eval(), name=name, run_id=run_id, signature=sig,
            input_example=example, pip_requirements=pip_requirements(), metadata=metadata,
            registered_model_name=registered, serialization_format="pt2",
            validate_serving_input=False, tags={**(tags or {}), "kind": metadata["kind"]},
        )
    return {"model_uri": info.model_uri, "version": int(info.registered_model_version or 0),
            "registered_name": registered, "seconds": time.perf_counter() - t0}


def example_latents(n: int, latent_dim: int) -> np.ndarray:
    # The example fixes nothing but the widths: batch stays dynamic (two rows, since
    # torch.export pins a size-1 dimension), values are a seeded draw, never shown.
    return np.random.default_rng(0).standard_normal((n, latent_dim)).astype(np.float32)
































