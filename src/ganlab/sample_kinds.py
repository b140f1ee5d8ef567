"""Stage `sample` for the conditional and cycle kinds (sample.py dispatches here).

conditional: `samples.npz` (images + the labels they were requested for, classes interleaved so
every prefix of 10k images is balanced), `grid.png` (row k = digit k, column j = the same
fixed noise z_j in every row), `interpolation.png` (row k = digit k along one slerp path).
cycle: `translations.npz` (each held-out test image of both domains, its translation and its
reconstruction, with the source labels for evaluation), `grid.png` (rows: MNIST -> UCI-style
-> reconstructed MNIST, then UCI -> MNIST-style -> reconstructed UCI).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ganlab.params import Params
from ganlab.sample import save_grid, slerp, to_uint8
from ganlab.util import atomic_path, derive_seed


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def balanced_labels(n: int, num_classes: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64) % num_classes


@torch.no_grad()
def sample_conditional(params: Params, variant: str, g, device: torch.device, out: Path,
                       echo=print) -> dict:
    from ganlab.latent import grid_noise

    sp, p = params.sample, params.variant(variant)
    num_classes = g.num_classes
    labels = balanced_labels(sp.n_samples, num_classes)
    gen = torch.Generator().manual_seed(derive_seed(params.seed, variant, "samples"))
    chunks = []
    for i in range(0, sp.n_samples, sp.batch_size):
        y = torch.from_numpy(labels[i : i + sp.batch_size])
        z = torch.randn(len(y), p.latent_dim, generator=gen)
        chunks.append(to_uint8(g(z.to(device), y.to(device))))
    _save_npz(out / "samples.npz", images=np.concatenate(chunks), labels=labels)
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


def _translate(f, x: Tensor, device: torch.device, batch_size: int) -> Tensor:
    return torch.cat([f(x[i : i + batch_size].to(device)).cpu()
                      for i in range(0, len(x), batch_size)])


@torch.no_grad()
def sample_cycle(params: Params, variant: str, pair, device: torch.device, out: Path,
                 echo=print) -> dict:
    """Translate every held-out image of both domains and back (images the nets never saw)."""
    from ganlab.data.images import load_split, to_unit_range
    from ganlab.data.uci import UCI_DIR

    sp = params.sample
    mnist = load_split(Path("data/prepared") / "test.npz")
    uci = load_split(UCI_DIR / "test.npz")
    a, b = to_unit_range(mnist.images), to_unit_range(uci.images)
    ab = _translate(pair.ab, a, device, sp.batch_size)
    aba = _translate(pair.ba, ab, device, sp.batch_size)
    ba = _translate(pair.ba, b, device, sp.batch_size)
    bab = _translate(pair.ab, ba, device, sp.batch_size)
    _save_npz(out / "translations.npz", a=mnist.images, a_labels=mnist.labels, ab=to_uint8(ab),
              aba=to_uint8(aba), b=uci.images, b_labels=uci.labels, ba=to_uint8(ba),
              bab=to_uint8(bab))
    k = sp.grid
    rows = [a[:k], ab[:k], aba[:k], b[:k], ba[:k], bab[:k]]
    save_grid(torch.cat(rows), out / "grid.png", nrow=k)
    echo(f"sample {variant}: {len(a)} MNIST -> UCI and {len(b)} UCI -> MNIST translations, "
         f"grid in {out}/")
    return {"n_samples": len(a) + len(b)}
