"""`kind: unconditional`, the sample stage's part."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ganlab.config.params import Params, TrainParams
from ganlab.core.images import save_grid, to_uint8
from ganlab.core.latent import grid_noise, slerp
from ganlab.kinds.base import SamplingKind
from ganlab.nets.build import build_gan
from ganlab.util import derive_seed, write_npz


def build_sampler(p: TrainParams, blob: dict) -> nn.Module:
    """G with the architecture a generator file was saved from (weights not loaded)."""
    g, _ = build_gan(p, tuple(blob["image_shape"]))
    return g


@torch.no_grad()
def sample(params: Params, variant: str, g: nn.Module, device: torch.device, out: Path,
           echo=print) -> dict:
    """samples.npz (N uint8 images), grid.png (the progress grids' fixed noise) and
    interpolation.png (four latent paths)."""
    sp = params.sample
    p = params.variant(variant)
    gen = torch.Generator().manual_seed(derive_seed(params.seed, variant, "samples"))
    chunks = []
    for i in range(0, sp.n_samples, sp.batch_size):
        z = torch.randn(min(sp.batch_size, sp.n_samples - i), p.latent_dim, generator=gen)
        chunks.append(to_uint8(g(z.to(device))))
    samples = np.concatenate(chunks)
    write_npz(out / "samples.npz", images=samples)
    # the same fixed noise as the progress grids written during training
    z = grid_noise(params, variant, sp.grid * sp.grid, p.latent_dim).to(device)
    save_grid(g(z).cpu(), out / "grid.png", nrow=sp.grid)
    rows = []
    zgen = torch.Generator().manual_seed(derive_seed(params.seed, variant, "interp"))
    t = torch.linspace(0, 1, sp.interp_steps)
    for _ in range(4):
        a, b = torch.randn(2, p.latent_dim, generator=zgen)
        path = slerp(a, b, t) if sp.interp_path == "slerp" else torch.lerp(a[None], b[None], t[:, None])
        rows.append(g(path.to(device)).cpu())
    save_grid(torch.cat(rows), out / "interpolation.png", nrow=sp.interp_steps)
    echo(f"sample {variant}: {len(samples)} samples, grid and interpolation in {out}/")
    return {"n_samples": len(samples)}


KIND = SamplingKind(name="unconditional", build_sampler=build_sampler, sample=sample,
                    sample_file="samples.npz")
