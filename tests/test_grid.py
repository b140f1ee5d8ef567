"""ganlab.grid draws torchvision's grids without importing torchvision."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ganlab.core.images import image_grid, save_png


def _torchvision_utils():
    return pytest.importorskip("torchvision.utils", reason="the comparison needs torchvision")


@pytest.mark.parametrize("n, channels, nrow, pad_value", [(10, 1, 8, 0.5), (64, 1, 8, 0.0),
                                                         (5, 3, 2, 0.5), (1, 3, 8, 0.0),
                                                         (1, 1, 8, 0.5), (3, 1, 8, 0.0)])
def test_grid_equals_torchvisions(n, channels, nrow, pad_value) -> None:
    # values beyond [-1, 1] check the clamping; 10 images in rows of 8 leave a short last row
    images = 1.3 * torch.randn(n, channels, 7, 9, generator=torch.Generator().manual_seed(n))
    ours = image_grid(images, nrow=nrow, padding=2, pad_value=pad_value)
    theirs = _torchvision_utils().make_grid(images, nrow=nrow, padding=2, pad_value=pad_value,
                                         normalize=True, value_range=(-1, 1))
    assert ours.shape == theirs.shape
    assert torch.equal(ours, theirs)


def test_png_has_save_images_pixels(tmp_path) -> None:
    images = torch.rand(12, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    save_png(images, tmp_path / "ours.png", nrow=8, pad_value=0.5)
    _torchvision_utils().save_image(images, tmp_path / "theirs.png", nrow=8, padding=2, pad_value=0.5,
                                 normalize=True, value_range=(-1, 1))
    ours, theirs = (np.asarray(Image.open(tmp_path / f)) for f in ("ours.png", "theirs.png"))
    assert ours.dtype == np.uint8 and ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)


def test_bad_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="image_grid"):
        image_grid(torch.zeros(4, 2, 8, 8))


def test_stages_that_draw_grids_do_not_import_torchvision(tmp_path) -> None:
    code = ("import sys, torch, ganlab.stages.train, ganlab.stages.sample, ganlab.tracking.runs\n"
            "from ganlab.core.images import save_png\n"
            f"save_png(torch.zeros(3, 1, 4, 4), {str(tmp_path / 'g.png')!r})\n"
            "print('torchvision' in sys.modules, 'torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
