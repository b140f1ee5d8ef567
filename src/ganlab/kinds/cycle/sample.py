"""`kind: cycle`, the sample stage's part."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ganlab.config.params import Params, TrainParams
from ganlab.core.images import save_grid, to_uint8
from ganlab.data.images import load_split, to_unit_range
from ganlab.kinds.base import SamplingKind
from ganlab.nets.cycle import build_cycle_gan
from ganlab.runtime.paths import PREPARED_DIR, UCI_DIR
from ganlab.util import write_npz


def _translate(f, x: Tensor, device: torch.device, batch_size: int) -> Tensor:
    return torch.cat([f(x[i : i + batch_size].to(device)).cpu()
                      for i in range(0, len(x), batch_size)])


def build_sampler(p: TrainParams, blob: dict) -> nn.Module:
    pair, _ = build_cycle_gan(p, tuple(blob["image_shape"]))
    return pair


@torch.no_grad()
def sample(params: Params, variant: str, pair, device: torch.device, out: Path,
                 echo=print) -> dict:
    """Translate every held-out image of both domains and back (images the nets never saw)."""

    sp = params.sample
    mnist = load_split(PREPARED_DIR / "test.npz")
    uci = load_split(UCI_DIR / "test.npz")
    a, b = to_unit_range(mnist.images), to_unit_range(uci.images)
    ab = _translate(pair.ab, a, device, sp.batch_size)
    aba = _translate(pair.ba, ab, device, sp.batch_size)
    ba = _translate(pair.ba, b, device, sp.batch_size)
    bab = _translate(pair.ab, ba, device, sp.batch_size)
    write_npz(out / "translations.npz", a=mnist.images, a_labels=mnist.labels, ab=to_uint8(ab),
              aba=to_uint8(aba), b=uci.images, b_labels=uci.labels, ba=to_uint8(ba),
              bab=to_uint8(bab))
    k = sp.grid
    rows = [a[:k], ab[:k], aba[:k], b[:k], ba[:k], bab[:k]]
    save_grid(torch.cat(rows), out / "grid.png", nrow=k)
    echo(f"sample {variant}: {len(a)} MNIST -> UCI and {len(b)} UCI -> MNIST translations, "
         f"grid in {out}/")
    return {"n_samples": len(a) + len(b)}


KIND = SamplingKind(name="cycle", build_sampler=build_sampler, sample=sample,
                    sample_file="translations.npz")
