"""Feature extractors behind one small interface, plus an on-disk cache.

Any object with a `name: str` and `__call__(images) -> (feats, probs)` is an
`Extractor`: images are a float tensor (N, C, H, W) in [-1, 1], feats an
(N, D) embedding, probs (N, K) class probabilities (tensors or arrays). The
metrics only ever see the numpy float64 arrays produced by `extract`.

`InceptionExtractor` is torchvision's Inception-v3 with locally stored
weights (no downloads at run time). Note its pool3 features are those of the
torchvision port, not of the TF graph used by the original FID code, so
absolute FID values are comparable within this project only.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from ganlab.util import atomic_path

FeatProbs = tuple[np.ndarray, np.ndarray]


@runtime_checkable
class Extractor(Protocol):
    name: str

    def __call__(self, images: torch.Tensor) -> tuple[object, object]: ...


def _to_numpy(x: object) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def extract(
    extractor: Extractor, images: np.ndarray | torch.Tensor, batch_size: int = 256
) -> FeatProbs:
    """Run any extractor over images in batches, without gradients."""
    imgs = torch.as_tensor(images, dtype=torch.float32)
    feats, probs = [], []
    with torch.no_grad():
        for start in range(0, imgs.shape[0], batch_size):
            f, p = extractor(imgs[start : start + batch_size])
            feats.append(_to_numpy(f))
            probs.append(_to_numpy(p))
    return np.concatenate(feats), np.concatenate(probs)


class InceptionExtractor:
    """Inception-v3 pool3 (2048-d) features and 1000-way softmax."""

    name = "inception"

    def __init__(self, model: torch.nn.Module, device: str = "cpu", batch_size: int = 64):
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.model = model.to(self.device).eval()
        self._pool: torch.Tensor | None = None
        # The 2048-d "pool3" embedding is the output of the global average
        # pool just before dropout + fc; a hook captures it during the normal
        # forward so the logits and the features come from one pass.
        self.model.avgpool.register_forward_hook(self._grab_pool)

    def _grab_pool(self, _module: torch.nn.Module, _inp: object, out: torch.Tensor) -> None:
        self._pool = out

    @classmethod
    def from_weights_file(
        cls, path: str | Path, device: str = "cpu", batch_size: int = 64
    ) -> InceptionExtractor:
        """Build torchvision's inception_v3 and load a local state_dict file."""
        from torchvision.models import inception_v3

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Inception weights file not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt / not a torch file
            raise ValueError(f"cannot read Inception weights file {path}: {exc}") from exc
        if not isinstance(state, dict):
            raise ValueError(f"{path} does not hold a state_dict (got {type(state).__name__})")
        # transform_input stays False: we feed [-1, 1] inputs, which is the
        # input range of the ported Google weights (torchvision's
        # transform_input=True only converts ImageNet-normalised inputs to it).
        model = inception_v3(weights=None, aux_logits=True, init_weights=False)
        result = model.load_state_dict(state, strict=False)
        # The auxiliary head is unused in eval mode, so state_dicts saved
        # without it are accepted; anything else missing/extra is an error.
        missing = [k for k in result.missing_keys if not k.startswith("AuxLogits.")]
        if missing or result.unexpected_keys:
            raise ValueError(
                f"{path} does not match inception_v3: missing {missing[:5]}, "
                f"unexpected {list(result.unexpected_keys)[:5]}"
            )
        return cls(model, device=device, batch_size=batch_size)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            x = x.unsqueeze(1)
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected images (N, 1|3, H, W), got {tuple(x.shape)}")
        x = x.to(self.device, torch.float32)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)

    def __call__(self, images: torch.Tensor) -> FeatProbs:
        images = torch.as_tensor(images)
        feats, probs = [], []
        with torch.no_grad():
            for start in range(0, images.shape[0], self.batch_size):
                logits = self.model(self._prepare(images[start : start + self.batch_size]))
                assert self._pool is not None
                feats.append(_to_numpy(self._pool.flatten(1)))
                probs.append(_to_numpy(torch.softmax(logits.double(), dim=1)))
        return np.concatenate(feats), np.concatenate(probs)


def feature_cache_key(images: np.ndarray, extractor_name: str) -> str:
    """sha256 over extractor name, dtype, shape and raw bytes of the images."""
    arr = np.ascontiguousarray(images)
    h = hashlib.sha256()
    # Length-free fields are separated by NUL so ("ab", (1,)) and ("a", ...)
    # cannot produce the same byte stream.
    h.update(f"{extractor_name}\0{arr.dtype.str}\0{arr.shape}\0".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def cached_features(
    cache_dir: str | Path, key: str, compute_fn: Callable[[], tuple[object, object]]
) -> FeatProbs:
    """Return (feats, probs) from `<cache_dir>/<key>.npz`, computing them once.

    The file is written to a temporary name and renamed into place, so a
    crash never leaves a truncated cache entry behind; an unreadable entry is
    recomputed rather than trusted.
    """
    path = Path(cache_dir) / f"{key}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                return data["feats"].astype(np.float64), data["probs"].astype(np.float64)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass
    feats_raw, probs_raw = compute_fn()
    feats, probs = _to_numpy(feats_raw), _to_numpy(probs_raw)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, feats=feats, probs=probs)
    return feats, probs
