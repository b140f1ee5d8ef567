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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ganlab.util import GanlabError, atomic_path

ARTIFACT = "generator"
REVERSE_ARTIFACT = "generator_reverse"
KINDS = ("unconditional", "conditional", "cycle")
# the cycle kind's domains (train_cycle.py): A = MNIST, B = UCI digits upsampled to 28x28
DOMAIN_A, DOMAIN_B = "mnist", "uci"


def registered_name(variant: str, reverse: bool = False) -> str:
    return f"ganlab-{variant}" + ("-reverse" if reverse else "")


class LabelledGenerator(nn.Module):
    """G(z, y) behind one tensor: row = [z (latent_dim), label (a float, rounded)]."""

    def __init__(self, g: nn.Module, latent_dim: int):
        super().__init__()
        self.g = g
        self.latent_dim = latent_dim

    def forward(self, z_label: Tensor) -> Tensor:
        z = z_label[:, : self.latent_dim]
        y = z_label[:, self.latent_dim].round().long()
        return self.g(z, y)


def _signature(name_in: str, shape_in: tuple[int, ...], shape_out: tuple[int, ...]):
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    f32 = np.dtype(np.float32)
    return ModelSignature(
        inputs=Schema([TensorSpec(f32, (-1, *shape_in), name_in)]),
        outputs=Schema([TensorSpec(f32, (-1, *shape_out), "image")]),
    )


def signature(latent_dim: int, image_shape: tuple[int, ...]):
    return _signature("z", (latent_dim,), image_shape)


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


def _log(run_id: str, module: nn.Module, name: str, registered: str, sig, example: np.ndarray,
         metadata: dict, tags: dict[str, str] | None) -> dict:
    """Log `module` (eval mode, CPU) as run `run_id`'s model `name`, registered as a new
    version of `registered`."""
    import mlflow
    import mlflow.pytorch

    from ganlab import tracking

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


def _latents(n: int, latent_dim: int) -> np.ndarray:
    # The example fixes nothing but the widths: batch stays dynamic (two rows, since
    # torch.export pins a size-1 dimension), values are a seeded draw, never shown.
    return np.random.default_rng(0).standard_normal((n, latent_dim)).astype(np.float32)


def log_generator(run_id: str, generator: nn.Module, variant: str, latent_dim: int,
                  image_shape: tuple[int, ...], tags: dict[str, str] | None = None) -> dict:
    """Log an unconditional G(z) as run `run_id`'s model `generator` and register it as
    `ganlab-<variant>` (a new version). Returns the version and the seconds it took."""
    meta = {"kind": "unconditional", "variant": variant, "latent_dim": latent_dim}
    return _log(run_id, generator, ARTIFACT, registered_name(variant),
                signature(latent_dim, image_shape), _latents(2, latent_dim), meta, tags)


def log_conditional(run_id: str, generator: nn.Module, variant: str, latent_dim: int,
                    n_classes: int, image_shape: tuple[int, ...],
                    tags: dict[str, str] | None = None) -> dict:
    """Log G(z, y) as the one-tensor model `z_label` -> `image` (LabelledGenerator)."""
    example = np.concatenate([_latents(2, latent_dim),
                              np.array([[0.0], [n_classes - 1.0]], np.float32)], 1)
    meta = {"kind": "conditional", "variant": variant, "latent_dim": latent_dim,
            "n_classes": n_classes, "label_column": latent_dim}
    return _log(run_id, LabelledGenerator(generator, latent_dim), ARTIFACT,
                registered_name(variant), _signature("z_label", (latent_dim + 1,), image_shape),
                example, meta, tags)


def log_cycle(run_id: str, pair: nn.Module, variant: str, image_shape: tuple[int, ...],
              tags: dict[str, str] | None = None) -> list[dict]:
    """Log both CycleGAN generators, `pair.ab` (MNIST -> UCI) as `ganlab-<variant>` and
    `pair.ba` (UCI -> MNIST) as `ganlab-<variant>-reverse`."""
    example = np.random.default_rng(0).uniform(-1, 1, (2, *image_shape)).astype(np.float32)
    sig = _signature("image", tuple(image_shape), tuple(image_shape))
    out = []
    for g, reverse, src, dst in ((pair.ab, False, DOMAIN_A, DOMAIN_B),
                                 (pair.ba, True, DOMAIN_B, DOMAIN_A)):
        meta = {"kind": "cycle", "variant": variant, "source": src, "target": dst,
                "direction": "ba" if reverse else "ab"}
        out.append(_log(run_id, g, REVERSE_ARTIFACT if reverse else ARTIFACT,
                        registered_name(variant, reverse), sig, example, meta, tags))
    return out


def log_trainer_models(run_id: str, trainer: Any, variant: str,
                       tags: dict[str, str] | None = None) -> list[dict]:
    """Log and register the generator(s) of a finished trainer of any kind."""
    g, shape = trainer.sampler(), tuple(trainer.image_shape)
    if trainer.kind == "conditional":
        return [log_conditional(run_id, g, variant, trainer.p.latent_dim, trainer.num_classes,
                                shape, tags)]
    if trainer.kind == "cycle":
        return log_cycle(run_id, g, variant, shape, tags)
    return [log_generator(run_id, g, variant, trainer.p.latent_dim, shape, tags)]


@dataclass
class ModelSpec:
    """What a logged generator takes and makes, read from its MLmodel file alone."""

    uri: str
    kind: str
    input_shape: tuple[int, ...]  # without the batch dimension
    output_shape: tuple[int, ...]
    metadata: dict = field(default_factory=dict)

    @property
    def latent_dim(self) -> int:
        return self.input_shape[0] - (1 if self.kind == "conditional" else 0)

    @property
    def n_classes(self) -> int:
        return int(self.metadata.get("n_classes", 0))


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def describe(model_uri: str) -> ModelSpec:
    """The kind and shapes of the model at `model_uri` (models:/, runs:/ or a local folder);
    reads the MLmodel file only, not the weights."""
    from mlflow.exceptions import MlflowException
    from mlflow.models import get_model_info

    try:
        info = get_model_info(model_uri)
    except (MlflowException, OSError) as e:
        raise GanlabError(f"--model {model_uri}: cannot load an MLflow model ({_first_line(e)})"
                          ) from None
    sig = info.signature
    if sig is None or not sig.inputs.is_tensor_spec() or not sig.outputs.is_tensor_spec():
        raise GanlabError(f"--model {model_uri}: has no tensor -> image signature")
    meta = dict(info.metadata or {})
    kind = meta.get("kind", "unconditional")
    if kind not in KINDS:
        raise GanlabError(f"--model {model_uri}: metadata kind {kind!r} is not one of "
                          f"{', '.join(KINDS)}")
    if kind == "conditional" and int(meta.get("n_classes", 0)) < 1:
        raise GanlabError(f"--model {model_uri}: conditional model without n_classes metadata")
    return ModelSpec(model_uri, kind, tuple(sig.inputs.inputs[0].shape[1:]),
                     tuple(sig.outputs.inputs[0].shape[1:]), meta)


def load(model_uri: str, spec: ModelSpec | None = None) -> tuple[nn.Module, ModelSpec]:
    """The generator behind `model_uri` and its spec (kind, shapes, metadata; `describe`
    unless given)."""
    import mlflow.pytorch
    from mlflow.exceptions import MlflowException

    spec = spec or describe(model_uri)
    try:
        g = mlflow.pytorch.load_model(model_uri, map_location="cpu")
    except (MlflowException, OSError) as e:
        raise GanlabError(f"--model {model_uri}: cannot load an MLflow model ({_first_line(e)})"
                          ) from None
    return g, spec


def check_request(spec: ModelSpec, label: int | None, inputs: Tensor | None) -> None:
    """--label and --input against the model's kind, before any weights are loaded."""
    if label is not None:
        if spec.kind != "conditional":
            raise GanlabError(f"--label {label}: {spec.uri} is a {spec.kind} model; only a "
                              f"conditional model takes a class label")
        if not 0 <= label < spec.n_classes:
            raise GanlabError(f"--label {label}: must be in 0..{spec.n_classes - 1} "
                              f"(the model's {spec.n_classes} classes)")
    if spec.kind == "cycle" and inputs is None:
        src = spec.metadata.get("source", "source-domain")
        raise GanlabError(f"--input: {spec.uri} translates images ({src} -> "
                          f"{spec.metadata.get('target', 'target')}); give them with --input "
                          f"FILE (.npz or .png)")
    if spec.kind != "cycle" and inputs is not None:
        raise GanlabError(f"--input: {spec.uri} is a {spec.kind} model, it generates from "
                          f"noise; only a cycle model translates --input images")
    if inputs is not None and tuple(inputs.shape[1:]) != spec.input_shape:
        raise GanlabError(f"--input: images of shape {tuple(inputs.shape[1:])}, the model "
                          f"takes {spec.input_shape}")


def labels_for(n: int, n_classes: int, label: int | None) -> Tensor:
    """Class K for all n, or 0, 1, ..., C-1, 0, 1, ... (a grid of C columns: a digit each)."""
    return torch.full((n,), label) if label is not None else torch.arange(n) % n_classes


@torch.no_grad()
def run_model(g: nn.Module, spec: ModelSpec, n: int, seed: int = 0, label: int | None = None,
              inputs: Tensor | None = None) -> Tensor:
    """n images in [-1, 1], in batches of 256: from latents drawn with `seed` (and labels, see
    `labels_for`), or the first n of `inputs` translated by a cycle model."""
    if spec.kind == "cycle":
        x = inputs[:n]
    else:
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(n, spec.latent_dim, generator=gen)
        if spec.kind == "conditional":
            x = torch.cat([x, labels_for(n, spec.n_classes, label).float()[:, None]], 1)
    return torch.cat([g(x[i : i + 256]) for i in range(0, len(x), 256)]) if len(x) else x


def generate(model_uri: str, n: int, seed: int = 0, label: int | None = None,
             inputs: Tensor | None = None) -> Tensor:
    """`run_model` on the model at `model_uri`, the request checked before the weights load."""
    spec = describe(model_uri)
    check_request(spec, label, inputs)
    g, spec = load(model_uri, spec)
    return run_model(g, spec, n, seed, label, inputs)


def _grid_tiles(img: np.ndarray, path: Path, tile: int = 28, pad: int = 2) -> np.ndarray:
    """The tiles of a grayscale PNG: one tile, or a `ganlab generate` grid (tiles `pad` apart
    on a gray background; trailing all-background tiles dropped)."""
    h, w = img.shape
    if (h, w) == (tile, tile):
        return img[None, None]
    step = tile + pad
    if (h - pad) % step or (w - pad) % step:
        raise GanlabError(f"--input {path}: a {w}x{h} PNG is neither one {tile}x{tile} image "
                          f"nor a grid of them as `ganlab generate -o x.png` writes")
    tiles = [img[pad + r * step : pad + r * step + tile, pad + c * step : pad + c * step + tile]
             for r in range((h - pad) // step) for c in range((w - pad) // step)]
    background = round(0.5 * 255)  # sample.save_grid's pad_value, as torchvision rounds it
    while tiles and (tiles[-1] == background).all():
        tiles.pop()
    return np.stack(tiles)[:, None]


def read_images(path: Path) -> Tensor:
    """Images in [-1, 1], (N, 1, H, W), from the uint8 `images` array of an .npz (what
    `ganlab generate -o x.npz` writes) or from a grayscale PNG (one image or a grid)."""
    path = Path(path)
    if not path.is_file():
        raise GanlabError(f"--input {path}: no such file")
    try:
        if path.suffix == ".npz":
            with np.load(path) as z:
                if "images" not in z:
                    raise GanlabError(f"--input {path}: no `images` array (has "
                                      f"{', '.join(z.files) or 'none'})")
                arr = z["images"]
        elif path.suffix == ".png":
            from PIL import Image

            with Image.open(path) as im:
                arr = _grid_tiles(np.asarray(im.convert("L")), path)
        else:
            raise GanlabError(f"--input {path}: must end in .npz or .png")
    except GanlabError:
        raise
    except Exception as e:  # a corrupt or foreign file: numpy/PIL each raise their own types
        raise GanlabError(f"--input {path}: cannot read images ({_first_line(e)})") from None
    if arr.dtype != np.uint8 or arr.ndim != 4 or len(arr) == 0:
        raise GanlabError(f"--input {path}: `images` must be a non-empty uint8 (N, C, H, W) "
                          f"array, got {arr.dtype} {arr.shape}")
    return torch.from_numpy(arr.astype(np.float32) / 127.5 - 1.0)


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
