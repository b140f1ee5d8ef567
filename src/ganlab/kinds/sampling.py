"""Every kind's sampling by name, for the sample stage (see ganlab.kinds.training for why
the registries are split by role)."""

from __future__ import annotations

import torch
from torch import nn

from ganlab.config.params import Params
from ganlab.kinds.base import SamplingKind
from ganlab.kinds.conditional import sample as conditional
from ganlab.kinds.cycle import sample as cycle
from ganlab.kinds.unconditional import sample as unconditional
from ganlab.runtime.paths import generator_path

KINDS: dict[str, SamplingKind] = {k.name: k for k in (unconditional.KIND, conditional.KIND, cycle.KIND)}


def kind_of(params: Params, variant: str) -> SamplingKind:
    return KINDS[params.variant(variant).kind]


def load_generator(params: Params, variant: str, device: torch.device,
                   seed: int | None = None) -> nn.Module:
    """The variant's sampler: G(z), G(z, y) (conditional) or the CyclePair (cycle), of
    training seed `seed` (default: the first of `seeds`). Tensors and plain types only
    (weights_only): a crafted generator.pt cannot run code."""
    from ganlab.util import GanlabError

    path = generator_path(params, variant, seed)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        g = kind_of(params, variant).build_sampler(params.variant(variant), blob)
        g.load_state_dict(blob["state_dict"])
    except Exception as e:  # torn, foreign, unsafe or another config's weights
        raise GanlabError(f"{path}: not a generator of variant {variant!r} "
                          f"({e.__class__.__name__}); rerun `ganlab train {variant}`") from None
    return g.to(device).eval()
