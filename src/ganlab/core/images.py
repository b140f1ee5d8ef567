"""Image grids as PNG files and arrays, without torchvision.

`import torchvision.utils` loads torchvision's models and ops, and with them torch._dynamo:
0.9 s of every stage that wrote a grid (measured with `python -X importtime`), for two
small functions. These draw the same grids as torchvision's `make_grid(normalize=True,
value_range=...)` and `save_image` (tests/test_grid.py compares them pixel for pixel).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ganlab.util import atomic_path


def image_grid(images: Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 0.0,
               value_range: tuple[float, float] = (-1.0, 1.0)) -> Tensor:
    """(N, C, H, W) images with values in `value_range` -> one (3, H', W') grid in [0, 1]:
    `nrow` images per row, `padding` pixels of `pad_value` around each. One channel is
    repeated to three, as torchvision does."""
    if images.dim() != 4 or images.shape[1] not in (1, 3) or images.shape[0] < 1:
        raise ValueError(f"image_grid: expected (N, 1 or 3, H, W) images, got {tuple(images.shape)}")
    lo, hi = value_range
    x = images.detach().float().cpu().clamp(lo, hi)
    x = (x - lo) / max(hi - lo, 1e-5)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[0] == 1:  # torchvision returns a single image as it is, without a frame
        return x[0].clone()
    n, _, h, w = x.shape
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    cell_h, cell_w = h + padding, w + padding
    grid = torch.full((3, cell_h * rows + padding, cell_w * cols + padding), float(pad_value))
    for k in range(n):
        top, left = (k // cols) * cell_h + padding, (k % cols) * cell_w + padding
        grid[:, top : top + h, left : left + w] = x[k]
    return grid


def grid_pixels(grid: Tensor) -> np.ndarray:
    """A [0, 1] grid as (H, W, 3) uint8, rounded the way torchvision's save_image rounds."""
    return grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()


def save_png(images: Tensor, path: Path | str, nrow: int = 8, padding: int = 2,
             pad_value: float = 0.0, value_range: tuple[float, float] = (-1.0, 1.0)) -> None:
    """Write `images` as one PNG grid to `path` (the caller makes the write atomic)."""
    from PIL import Image

    grid = image_grid(images, nrow=nrow, padding=padding, pad_value=pad_value, value_range=value_range)
    Image.fromarray(grid_pixels(grid)).save(path, format="png")


def to_uint8(x: Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


def save_grid(images: Tensor, path: Path, nrow: int) -> None:
    from ganlab.core.images import save_png

    with atomic_path(path, suffix=".png") as tmp:
        save_png(images, tmp, nrow=nrow, padding=2, pad_value=0.5)
