"""`kind: conditional`, the sample stage's part."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ganlab.config.params import Params, TrainParams
from ganlab.core.images import save_grid, to_uint8
from ganlab.core.latent import grid_noise, slerp
from ganlab.kinds.base import SamplingKind
from ganlab.nets.conditional import build_conditional_gan
from ganlab.util import derive_seed, write_npz


def balanced_labels(n: int, num_classes: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64) % num_classes


def build_sampler(p: TrainParams, blob: dict) -> nn.Module:
    g, _ = build_conditional_gan(p, tuple(blob["image_shape"]), blob["num_classes"])
    return g


@torch.no_grad()
def sample(params: Params, variant: str, g, device: torch.device, out: Path,
                       echo=print) -> dict:

    sp, p = params.sample, params.variant(variant)
    num_classes = g.num_classes
    labels = balanced_labels(sp.n_samples, num_classes)
    gen = torch.Generator().manual_seed(derive_seed(params.seed, variant, "samples"))
    chunks = []
    for i in range(0, sp.n_samples, sp.batch_size):
        y = torch.from_numpy(labels[i : i + sp.batch_size])
        z = torch.randn(len(y), p.latent_dim, generator=gen)
        chunks.append(to_uint8(g(z.to(device), y.to(device))))
    write_npz(out / "samples.npz", images=np.concatenate(chunks), labels=labels)
    # the same fixed noise as the training progress grids: column j is z_j in every row
    z = grid_noise(params, variant, sp.grid, p.latent_dim)
    y = torch.arange(num_classes).repeat_interleave(sp.grid)
    save_grid(g(z.repeat(num_classes, 1).to(device), y.to(device)).cpu(), out / "grid.png",
              nrow=sp.grid)
    zgen = torch.Generator().manual_seed(derive_seed(params.seed, variant, "interp"))
    a, b = torch.randn(2, p.latent_dim, generator=zgen)
    t = torch.linspace(0, 1, sp.interp_steps)
    path = slerp(a, b, t) if sp.interp_path == "slerp" else torch.lerp(a[None], b[None], t[:, None])
    y = torch.arange(num_classes).repeat_interleave(sp.interp_steps)
    save_grid(g(path.repeat(num_classes, 1).to(device), y.to(device)).cpu(),
              out / "interpolation.png", nrow=sp.interp_steps)
    echo(f"sample {variant}: {len(labels)} samples ({num_classes} classes), class-by-row grid "
         f"and interpolation in {out}/")
    return {"n_samples": len(labels)}


KIND = SamplingKind(name="conditional", build_sampler=build_sampler, sample=sample,
                    sample_file="samples.npz")
