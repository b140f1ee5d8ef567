"""Stacked MNIST's data: stacks of three prepared digits, drawn on the fly.

A stack is three training digits drawn independently and uniformly (with replacement) as its
R, G, B channels. Nothing is stored but the prepared digits themselves (4,000 x 28 x 28 as
float32: 12.5 MB); every batch draws fresh index triples from a seeded generator.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ganlab.config.stacked import STACK_CHANNELS
from ganlab.data.images import Split, load_split, to_unit_range
from ganlab.util import GanlabError, atomic_path


def load_digits(data_dir: Path) -> tuple[Split, Tensor]:
    """The prepared training split and its digits as (N, 1, 28, 28) in [-1, 1]."""
    path = Path(data_dir) / "train.npz"
    split = load_split(path)
    if split.images.shape[1:] != (1, 28, 28):
        raise GanlabError(f"Stacked MNIST stacks 28x28 grayscale digits; {path} holds "
                          f"{tuple(split.images.shape[1:])} images (dataset.name an MNIST set)")
    return split, to_unit_range(split.images)


def draw_stacks(digits: Tensor, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """n stacks of three digits drawn independently from `digits` (N, 1, H, W): the stacks
    (n, 3, H, W) and the indices (n, 3) they were drawn from."""
    idx = torch.randint(0, digits.shape[0], (n, STACK_CHANNELS), generator=gen,
                        device=gen.device)
    idx = idx.to(digits.device)
    return digits[idx.flatten()].reshape(n, STACK_CHANNELS, *digits.shape[2:]), idx


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """An .npz np.load reads, byte-identical for identical arrays (np.savez stamps the time,
    which would make DVC see a changed output every run)."""
    with atomic_path(path, suffix=".npz") as tmp, zipfile.ZipFile(tmp, "w") as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue())
