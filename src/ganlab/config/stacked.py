"""Settings of Stacked MNIST (`stacked:` in params.yaml), the opt-in mode-collapse benchmark.

Protocol (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al. 2018, Tables 2-3): a sample is
three digits stacked as the R, G, B channels; the judge labels each channel, a mode is the
label triple (1,000 of them), a mode is covered when at least one of `n_samples` generated
stacks lands in it, and KL(generated mode histogram || uniform) measures the balance. The
floor is the same score of `n_floor` real stacks.

Torch-free, as ganlab.config.toy: a variant's training settings are `TrainParams` built by
ganlab.config.params (passed in as `build_train`, so this module imports nothing of it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ganlab.util import ParamsError

N_MODES = 1000  # 10 digit labels per channel, 3 channels
STACK_CHANNELS = 3
# The keys a stacked variant adds to the training keys (`training:`'s names)
VARIANT_KEYS = ("pack", "d_ratio", "g_steps")


@dataclass(frozen=True)
class StackedVariant:
    """One Stacked MNIST variant: its training settings and the two PacGAN knobs."""

    train: Any  # ganlab.config.params.TrainParams: loss, penalties, optimiser, G's width...
    pack: int = 1  # m: D judges m samples concatenated along channels (PacGAN); 1 = no packing
    d_ratio: float = 0.25  # D's channels over G's (PacGAN Table 3: 1/4 and 1/2)
    g_steps: int | None = None  # this variant's G updates; None: `stacked.g_steps`

    @property
    def d_width(self) -> int:
        return max(1, round(self.train.width * self.d_ratio))

    def steps(self, default: int) -> int:
        """G updates of one run: the variant's own `g_steps`, else `default` (stacked.g_steps)."""
        return default if self.g_steps is None else self.g_steps


@dataclass(frozen=True)
class StackedParams:
    seeds: tuple[int, ...] = (0, 1, 2)  # training seeds per variant (mean and spread over them)
    n_samples: int = 26000  # generated stacks scored per run (the protocol's N)
    n_floor: int = 26000  # real stacks scored for the floor
    g_steps: int = 2000  # generator updates per run (D steps = g_steps x n_critic)
    score_batch: int = 1000  # stacks generated and judged at once
    # processes per stacked stage, each training and scoring its share of the seeds with one
    # torch thread (1: in the stage's own process, torch's default threads). Part of the
    # result as toy.workers: the thread count changes float rounding, not the method.
    workers: int = 2
    # every variant's training settings (the `training:` keys, but not inherited from the
    # top-level `training:`: Stacked MNIST's settings are its own) and the variants
    training: Any = None
    variants: dict[str, StackedVariant] = field(default_factory=dict)

    def check(self, key: str = "stacked") -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ParamsError(f"{key}.seeds: {list(self.seeds)} must be distinct integers >= 0")
        for name in ("n_samples", "n_floor", "g_steps", "score_batch", "workers"):
            if getattr(self, name) < 1:
                raise ParamsError(f"{key}.{name}: {getattr(self, name)!r} must be >= 1")


def parse_stacked(raw: Any, build_train: Callable[[str, dict, Any], Any],
                  key: str = "stacked") -> StackedParams:
    """StackedParams from the `stacked:` mapping. `build_train(key, spec, base)` builds and
    checks a TrainParams from `spec` over `base` (None: the schema's defaults)."""
    from ganlab.config.parse import build_section

    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{key}: expected a mapping, got {raw!r}")
    raw = dict(raw)
    training_raw = raw.pop("training", None) or {}
    variants_raw = raw.pop("variants", None) or {}
    out = build_section(key, StackedParams, raw)
    out.check(key)
    training = build_train(f"{key}.training", training_raw, None)
    if not isinstance(variants_raw, dict):
        raise ParamsError(f"{key}.variants: expected a mapping of name -> settings")
    variants = {}
    for name, spec in variants_raw.items():
        vkey = f"{key}.variants.{name}"
        if not isinstance(name, str) or not re.match(r"^[a-z][a-z0-9_]*$", name):
            raise ParamsError(f"{vkey}: a variant name must be lower case letters, digits and _")
        if spec is not None and not isinstance(spec, dict):
            raise ParamsError(f"{vkey}: expected a mapping, got {spec!r}")
        spec = dict(spec or {})
        knobs = {k: spec.pop(k) for k in VARIANT_KEYS if k in spec}
        train = build_train(vkey, spec, training)
        pack, d_ratio = knobs.get("pack", 1), knobs.get("d_ratio", StackedVariant.d_ratio)
        g_steps = knobs.get("g_steps")
        if g_steps is not None and (isinstance(g_steps, bool) or not isinstance(g_steps, int)
                                    or g_steps < 1):
            raise ParamsError(f"{vkey}.g_steps: {g_steps!r} must be an integer >= 1 (or absent: "
                              f"{key}.g_steps)")
        if isinstance(pack, bool) or not isinstance(pack, int) or not 1 <= pack <= 8:
            raise ParamsError(f"{vkey}.pack: {pack!r} must be an integer in [1, 8]")
        if isinstance(d_ratio, bool) or not isinstance(d_ratio, int | float) \
                or not (math.isfinite(d_ratio) and 0 < d_ratio <= 4):
            raise ParamsError(f"{vkey}.d_ratio: {d_ratio!r} must be a number in (0, 4]")
        if train.kind != "unconditional" or train.arch != "dcgan":
            raise ParamsError(f"{vkey}: Stacked MNIST trains unconditional conv nets "
                              f"(kind unconditional, arch dcgan), not {train.kind}/{train.arch}")
        variants[name] = StackedVariant(train, pack, float(d_ratio), g_steps)
    return StackedParams(**{**out.__dict__, "training": training, "variants": variants})
