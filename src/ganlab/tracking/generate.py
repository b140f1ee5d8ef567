"""`ganlab generate`: images from a logged generator, with nothing but the MLflow store.

A model is described from its MLmodel file alone (`describe`: kind, shapes, metadata) and every
request (--label, --input, -n, -o) is checked against it before any weights load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ganlab.util import GanlabError, atomic_path

KINDS = ("unconditional", "conditional", "cycle")


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


def check_exported(model_uri: str, local: Path) -> None:
    """Refuse every model but the exported PyTorch flavour ganlab logs (`torch.export`, "pt2"):
    a pickle-format model (model.pth) runs code when it is loaded, and a flavour with a `code`
    folder puts that folder on sys.path. Read from the MLmodel file and the folder listing only."""
    import yaml

    try:
        mlmodel = yaml.safe_load((local / "MLmodel").read_text(encoding="utf-8"))
        flavor = (mlmodel.get("flavors") or {}).get("pytorch")
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError) as e:
        raise GanlabError(f"--model {model_uri}: unreadable MLmodel file ({_first_line(e)})") from None
    if not isinstance(flavor, dict):
        raise GanlabError(f"--model {model_uri}: not a PyTorch MLflow model (no pytorch flavour); "
                          f"ganlab generate loads the exported (pt2) generators ganlab logs")
    data = local / str(flavor.get("model_data", "data"))
    if flavor.get("code"):
        raise GanlabError(f"--model {model_uri}: its pytorch flavour ships code ({flavor['code']}), "
                          f"which would be imported; ganlab generate loads only exported (pt2) "
                          f"models without code")
    if (data / "model.pth").exists() or (data / "pickle_module_info.txt").exists() \
            or not (data / "model.pt2").is_file():
        raise GanlabError(f"--model {model_uri}: a pickle-format PyTorch model, which runs code when "
                          f"loaded; ganlab generate loads only the exported (pt2, torch.export) "
                          f"format ganlab logs")


def load(model_uri: str, spec: ModelSpec | None = None) -> tuple[nn.Module, ModelSpec]:
    """The generator behind `model_uri` and its spec (kind, shapes, metadata; `describe`
    unless given). Only an exported (pt2) model is loaded, with MLflow's pickle switch off:
    MLflow then checks that the archive holds tensors and plain types only, so nothing in a
    crafted model runs (check_exported; MLFLOW_ALLOW_PICKLE_DESERIALIZATION is overridden)."""
    import os
    import tempfile

    import mlflow.pytorch
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"  # whatever the shell says
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # stderr: errors only
    spec = spec or describe(model_uri)
    try:
        with tempfile.TemporaryDirectory(prefix="ganlab-generate-") as tmp:
            local = Path(download_artifacts(artifact_uri=model_uri, dst_path=tmp))
            check_exported(model_uri, local)
            g = mlflow.pytorch.load_model(str(local), map_location="cpu")
    except GanlabError:
        raise
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
    from ganlab.core.images import save_grid

    save_grid(images, out, nrow=nrow)


# images per `ganlab generate` call: FID's customary 50,000, about 0.6 GB of float32 28x28 or
# 2.5 GB of 32x32 RGB images held at once (more is a loop over --seed)
MAX_IMAGES = 50_000


def check_output(out: Path, n: int) -> Any:
    if Path(out).suffix not in (".png", ".npz"):
        raise GanlabError(f"-o {out}: must end in .png (a grid) or .npz (the uint8 images)")
    if n < 1:
        raise GanlabError(f"-n {n}: must be at least 1")
    if n > MAX_IMAGES:
        raise GanlabError(f"-n {n}: at most {MAX_IMAGES} images per call (the cap; for more, "
                          f"call again with another --seed)")


def check_store(uri: str, source: str, model_uri: str) -> None:
    """The store a models:/ or runs:/ --model is read from must exist (a mistyped SQLite path
    would otherwise be created as a new, empty database) and answer (a server)."""
    from ganlab.tracking.store import check_reachable, sqlite_file

    if not model_uri.startswith(("models:/", "runs:/")):
        return  # a local model folder needs no store
    db = sqlite_file(uri)
    if db is not None and not db.is_file():
        raise GanlabError(f"{source} {uri}: no such MLflow store ({db} does not exist); "
                          f"generate reads an existing store and never creates one")
    check_reachable(uri)
