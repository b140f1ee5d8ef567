"""A folder dataset a test writes: one subfolder per class of small PNG files, two shapes a
classifier tells apart (a bright disc, a bright square) at random places and sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def shape_image(label: int, size: int, rng: np.random.Generator, rgb: bool = False) -> np.ndarray:
    """uint8 (size, size) or (size, size, 3): class 0 a disc, class 1 a square, on noise."""
    img = rng.integers(0, 40, (size, size)).astype(np.float64)
    r = rng.uniform(0.2, 0.35) * size
    cy, cx = rng.uniform(r, size - r, 2)
    yy, xx = np.mgrid[:size, :size]
    if label == 0:
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    else:
        mask = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
    img[mask] = rng.uniform(180, 255)
    img = img.clip(0, 255).astype(np.uint8)
    if rgb:
        img = np.stack([img, img // 2, 255 - img], axis=-1)
    return img


def write_image_folder(root: Path, per_class: int = 60, classes: tuple[str, ...] = ("disc", "square"),
                       sizes: tuple[int, ...] = (28,), rgb: bool = False, seed: int = 0) -> Path:
    """root/<class>/<i>.png, `per_class` per class; image i has size sizes[i % len(sizes)]."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = shape_image(label % 2, sizes[i % len(sizes)], rng, rgb)
            Image.fromarray(arr).save(root / name / f"{i:03d}.png")
    return root
