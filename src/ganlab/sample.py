"""Stage `sample`: a fixed-noise grid, N samples for evaluation, a latent interpolation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ganlab.latent import grid_noise
from ganlab.nets import build_gan
from ganlab.params import Params
from ganlab.util import GanlabError, atomic_path, derive_seed, resolve_device

SAMPLES_DIR = Path("samples")


def generator_path(params: Params, variant: str, seed: int | None = None) -> Path:
    """models/variants/<V>[/seeds/<s>]/generator.pt of training seed `seed`; an error naming
    the file and the command that writes it when it is missing."""
    path = Path("models/variants") / variant / params.seed_dir(params.training_seed(seed)) / "generator.pt"
    if not path.exists():
        raise GanlabError(f"{path}: generator not found (run `ganlab train {variant}` first)")
    return path


def load_generator(params: Params, variant: str, device: torch.device,
                   seed: int | None = None) -> torch.nn.Module:
    """The variant's sampler: G(z), G(z, y) (conditional) or the CyclePair (cycle), of
    training seed `seed` (default: the first of `seeds`)."""
    path = generator_path(params, variant, seed)
    blob = torch.load(path, map_location="cpu", weights_only=False)
    p = params.variant(variant)
    shape = tuple(blob["image_shape"])
    if p.kind == "conditional":
        from ganlab.nets.conditional import build_conditional_gan

        g, _ = build_conditional_gan(p, shape, blob["num_classes"])
    elif p.kind == "cycle":
        from ganlab.nets.cycle import build_cycle_gan

        g, _ = build_cycle_gan(p, shape)
    else:
        g, _ = build_gan(p, shape)
    g.load_state_dict(blob["state_dict"])
    return g.to(device).eval()


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation (White 2016): stays at the typical radius of a Gaussian, where
    a straight line between two samples passes through unusually low-norm latents."""
    a_n, b_n = a / a.norm(), b / b.norm()
    omega = torch.arccos((a_n * b_n).sum().clamp(-1.0, 1.0))
    if omega.abs() < 1e-6:
        return torch.lerp(a[None], b[None], t[:, None])
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so)[:, None] * a + (torch.sin(t * omega) / so)[:, None] * b


def to_uint8(x: Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


def save_grid(images: Tensor, path: Path, nrow: int) -> None:
    from ganlab.grid import save_png

    with atomic_path(path, suffix=".png") as tmp:
        save_png(images, tmp, nrow=nrow, padding=2, pad_value=0.5)


def run_sample(params: Params, variant: str, echo=print, seed: int | None = None) -> dict:
    """Samples of training seed `seed` (default: the first of `seeds`): the first seed's in
    samples/<V>/, each other seed's in samples/<V>/seeds/<s>/. Every seed draws the same
    latents (seeded by `seed:`, not by the training seed), so seeds differ only by training."""
    device = resolve_device(params.device)
    seed = params.training_seed(seed)
    g = load_generator(params, variant, device, seed)
    return _sample_one(params, variant, g, device, SAMPLES_DIR / variant / params.seed_dir(seed), echo)


@torch.no_grad()
def _sample_one(params: Params, variant: str, g: torch.nn.Module, device: torch.device,
                out: Path, echo) -> dict:
    sp = params.sample
    p = params.variant(variant)
    if p.kind != "unconditional":
        from ganlab.sample_kinds import sample_conditional, sample_cycle

        run = sample_conditional if p.kind == "conditional" else sample_cycle
        return run(params, variant, g, device, out, echo)
    gen = torch.Generator().manual_seed(derive_seed(params.seed, variant, "samples"))
    chunks = []
    for i in range(0, sp.n_samples, sp.batch_size):
        z = torch.randn(min(sp.batch_size, sp.n_samples - i), p.latent_dim, generator=gen)
        chunks.append(to_uint8(g(z.to(device))))
    samples = np.concatenate(chunks)
    with atomic_path(out / "samples.npz", suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, images=samples)
    # the same fixed noise as the per-epoch progress grids written during training
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
