"""Every kind's scoring by name, for the evaluate stage (see ganlab.kinds.training for why
the registries are split by role)."""

from __future__ import annotations

from ganlab.config.params import Params
from ganlab.kinds.base import ScoringKind
from ganlab.kinds.conditional import evaluate as conditional
from ganlab.kinds.cycle import evaluate as cycle
from ganlab.kinds.unconditional import evaluate as unconditional

KINDS: dict[str, ScoringKind] = {k.name: k for k in (unconditional.KIND, conditional.KIND, cycle.KIND)}


def kind_of(params: Params, variant: str) -> ScoringKind:
    return KINDS[params.variant(variant).kind]
