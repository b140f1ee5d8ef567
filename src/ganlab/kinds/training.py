"""Every training kind by name, for the stages that train (train, quality).

The kinds' registries are split by role (training here, ganlab.kinds.sampling,
ganlab.kinds.scoring) because DVC's unit of dependency is the module: a stage depends on every
module it imports, so one registry of all roles would make a change to how a kind samples
retrain every variant. Adding a kind is a package in ganlab.kinds with train.py, sample.py
and evaluate.py, one line in each registry, and its name in ganlab.config.params.KIND_NAMES
(tests/test_layout.py ties the four lists).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ganlab.config.params import Params
from ganlab.kinds.base import Trainer, TrainingKind
from ganlab.kinds.conditional import model as conditional_model
from ganlab.kinds.conditional import train as conditional
from ganlab.kinds.cycle import model as cycle_model
from ganlab.kinds.cycle import train as cycle
from ganlab.kinds.unconditional import model as unconditional_model
from ganlab.kinds.unconditional import train as unconditional
from ganlab.runtime.distributed import DistContext
from ganlab.util import GanlabError

KINDS: dict[str, TrainingKind] = {k.name: k for k in (
    TrainingKind("unconditional", unconditional.build_trainer, unconditional_model.log_models,
                 distributed=True),
    TrainingKind("conditional", conditional.build_trainer, conditional_model.log_models),
    TrainingKind("cycle", cycle.build_trainer, cycle_model.log_models),
)}


def kind_of(params: Params, variant: str) -> TrainingKind:
    return KINDS[params.variant(variant).kind]


def build_trainer(params: Params, variant: str, data_dir: Path, device: torch.device,
                  dist: DistContext | None = None, generate_only: bool = False) -> Trainer:
    """The trainer of the variant's kind, on the prepared data it trains on. `generate_only`:
    for loading weights and generating (the quality stage); a kind may then skip what only
    training needs (the cycle kind's semantic classifiers, pretrained in its constructor)."""
    kind = kind_of(params, variant)
    if not kind.distributed and dist is not None and dist.active:
        raise GanlabError(f"variants.{variant}.kind: {kind.name!r} trains in one process; torchrun "
                          "(distributed.nproc > 1) takes unconditional variants")
    return kind.build_trainer(params, variant, data_dir, device, dist, generate_only=generate_only)
