"""The UCI 8x8 handwritten digits (scikit-learn's `load_digits`) as a second digit domain.

1,797 images with 17 grey levels (0-16), upsampled bilinearly to 28x28 and rescaled to the
uint8 0-255 convention of data/images.py (so `to_unit_range` gives [-1, 1] like MNIST).
Split per class like the MNIST subset (seeded), stored shuffled. CycleGAN uses them unpaired:
its epoch permutations of MNIST and UCI are drawn independently, and the labels are read only
by evaluation.
"""

from __future__ import annotations

import numpy as np

from ganlab.data.images import Split, stratified_split


def upsample_uci(images8: np.ndarray, size: int = 28) -> np.ndarray:
    """(N, 8, 8) grey levels 0-16 -> uint8 (N, 1, size, size) in 0-255, bilinear.

    align_corners=False treats pixels as areas (each 8x8 pixel covers 3.5x3.5 output pixels),
    so the digit fills the frame the way an 8x8 thumbnail would when enlarged."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.asarray(images8, dtype=np.float32)).reshape(-1, 1, 8, 8) / 16.0
    up = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (up.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def load_uci_digits(test_fraction: float, seed: int) -> tuple[Split, Split]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = upsample_uci(d.images)
    labels = d.target.astype(np.int64)
    tr, te = stratified_split(labels, test_fraction, seed)
    return Split(images[tr], labels[tr]), Split(images[te], labels[te])


