"""Settings of the mode-coverage suite (`toy:` in params.yaml), torch-free.

`ganlab.config.params` builds this when it validates params.yaml, and every stage imports
`ganlab.config.params`; keeping torch, the nets and the trainer out of this module keeps them out
of every stage's import closure (issue 10, item 4).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ganlab.util import ParamsError

# The names in ganlab.data.toy.TOY_DATASETS (tests/test_toy_ensemble.py keeps them equal);
# repeated here so validating params.yaml does not import torch.
TOY_DATASET_NAMES = ("ring8", "grid25")
# The training keys a variant's own toy settings (`toy.variants.<V>`) may set: the optimiser,
# its rates and the loss's constraint strengths, which the papers tune per loss for the toy
# (WGAN-GP's toy: lambda 0.1, Adam 1e-4 (0.5, 0.9), n_critic 5).
TOY_VARIANT_KEYS = ("optimizer", "lr", "d_lr", "betas", "n_critic", "clip", "gp", "r1", "r2")


@dataclass(frozen=True)
class ToySuiteParams:
    """Settings of the suite. Budgets count generator updates (G steps): a variant with
    n_critic 5 trains its critic 5x as many steps, so every loss gets the same number of
    generator updates (issue 10)."""

    datasets: tuple[str, ...] = ("ring8", "grid25")
    seeds: tuple[int, ...] = (0, 1, 2)
    g_steps: int = 2000  # generator updates per training (D steps = g_steps x n_critic)
    batch_size: int = 128
    latent_dim: int = 2
    width: int = 64  # hidden units of each of the 3 layers in G and in D
    n_train: int = 25600  # training points per member (raised to one check's worth if smaller)
    n_eval: int = 2500  # generated points scored at the end (the papers' protocol)
    n_snapshots: int = 4  # panels in the per-variant progress PNG (first seed)
    lr_scale: float = 2.5  # multiplies each variant's lr and d_lr: the image-tuned rates are slow here
    # D's lr over G's on top of lr_scale (TTUR, Heusel et al. 2017), for every variant alike:
    # a D that resolves the grid's 0.05-wide modes is what lifts the share of high quality
    d_lr_ratio: float = 1.0
    # Adam's (beta1, beta2) for every Adam variant alike; without the key (`-S '~toy.betas'`),
    # each variant's own.
    # beta1 0 (no momentum) as in SNGAN's and BigGAN's setups: at the toy rates momentum
    # overshoots the grid's narrow modes
    betas: tuple[float, ...] = ()
    lr_decay_start: float = 0.5  # share of g_steps after which both lrs decay linearly...
    lr_final: float = 0.1  # ...to this fraction of their value at the last step
    standardize: bool = True  # train on data / its std; samples are scaled back before scoring
    check_every: int = 100  # G steps between diversity checks
    n_check: int = 512  # fixed-noise points per check (and per PNG panel)
    collapse_threshold: float = 0.25  # diversity below this counts as collapsed
    collapse_patience: int = 3  # consecutive collapsed checks before a warning
    collapse_warmup: int = 300  # G steps before checks count (a fresh G is a point blob)
    early_stop_on_collapse: bool = False  # a collapsed member keeps its most diverse G
    # processes per toy stage, each training the members of its share of `datasets` (one
    # thread each: nets this small gain nothing from intra-op threads). Part of the result:
    # batching other members changes float32 rounding, not the method.
    workers: int = 2
    # a variant's own toy settings, decoupled from its image settings: {variant: {key: value}}
    # over TOY_VARIANT_KEYS. Its `lr` / `d_lr` are the toy rates themselves (lr_scale and
    # d_lr_ratio do not apply; d_lr defaults to its lr), its `betas` win over `toy.betas`.
    # Checked against the variant's training settings by ganlab.config.params.
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)

    def check(self, key: str = "toy") -> None:
        if not self.datasets:
            raise ParamsError(f"{key}.datasets: must list at least one of {', '.join(TOY_DATASET_NAMES)}")
        for name in self.datasets:
            if name not in TOY_DATASET_NAMES:
                raise ParamsError(f"{key}.datasets: {name!r} is not one of {', '.join(TOY_DATASET_NAMES)}")
        if len(set(self.datasets)) != len(self.datasets):
            raise ParamsError(f"{key}.datasets: {list(self.datasets)} lists a dataset twice")
        if not self.seeds:
            raise ParamsError(f"{key}.seeds: must list at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ParamsError(f"{key}.seeds: {list(self.seeds)} lists a seed twice")
        for name in ("g_steps", "batch_size", "latent_dim", "width", "n_train", "n_eval",
                     "n_snapshots", "check_every", "collapse_patience", "workers"):
            if getattr(self, name) < 1:
                raise ParamsError(f"{key}.{name}: {getattr(self, name)!r} must be >= 1")
        if self.n_check < 2:
            raise ParamsError(f"{key}.n_check: {self.n_check!r} must be >= 2")
        if self.collapse_warmup < 0:
            raise ParamsError(f"{key}.collapse_warmup: {self.collapse_warmup!r} must be >= 0")
        if not self.lr_scale > 0:
            raise ParamsError(f"{key}.lr_scale: {self.lr_scale!r} must be > 0")
        if not self.d_lr_ratio > 0:
            raise ParamsError(f"{key}.d_lr_ratio: {self.d_lr_ratio!r} must be > 0")
        if self.betas:
            if len(self.betas) != 2:
                raise ParamsError(f"{key}.betas: {list(self.betas)} must be two numbers [beta1, beta2], "
                                  "or left out to keep each variant's own")
            for i, b in enumerate(self.betas):
                if not 0.0 <= b <= 0.9999:  # the range a variant's own betas may take
                    raise ParamsError(f"{key}.betas[{i}]: {b!r} must be in [0, 0.9999]")
        if not 0.0 <= self.lr_decay_start <= 1.0:
            raise ParamsError(f"{key}.lr_decay_start: {self.lr_decay_start!r} must be in [0, 1]")
        if not 0.0 < self.lr_final <= 1.0:
            raise ParamsError(f"{key}.lr_final: {self.lr_final!r} must be in (0, 1]")
        # The diversity signal is a ratio of mean pairwise distances: >= 0, ~1 for the data.
        if not 0.0 < self.collapse_threshold < 1.0:
            raise ParamsError(
                f"{key}.collapse_threshold: {self.collapse_threshold!r} must be in (0, 1): the "
                "diversity signal is >= 0 and ~1 for a generator as spread out as the data"
            )
        counted = len(counted_checks(self.g_steps, self.check_every, self.collapse_warmup))
        if counted < self.collapse_patience:
            # Issue 10, defect 5: warm-up 500, a check every 100, patience 3 and a 600-step
            # budget left two counted checks, so the detector could never fire.
            raise ParamsError(
                f"{key}.collapse_patience: {self.collapse_patience} consecutive checks can never "
                f"happen: g_steps {self.g_steps} with a check every {self.check_every} after "
                f"collapse_warmup {self.collapse_warmup} leaves {counted} counted check(s); "
                "lower collapse_warmup / collapse_patience / check_every or raise g_steps"
            )

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None, key: str = "toy") -> ToySuiteParams:
        """Build from the `toy:` mapping of params.yaml; missing keys keep the defaults."""
        from ganlab.config.parse import build_section

        raw = dict(raw or {})
        own = raw.pop("variants", None) or {}
        out = build_section(key, cls, raw)
        out.check(key)
        # without the variants to check against (ganlab.config.params does that), only the keys
        if not isinstance(own, Mapping) or any(
                not isinstance(v, Mapping) or set(v) - set(TOY_VARIANT_KEYS) for v in own.values()):
            raise ParamsError(f"{key}.variants: a mapping of variant -> {{{', '.join(TOY_VARIANT_KEYS)}}}")
        return dataclasses.replace(out, variants={k: dict(v) for k, v in own.items()})


def check_steps(g_steps: int, check_every: int) -> list[int]:
    """G steps at which the suite checks diversity: every `check_every`, and the last step."""
    steps = list(range(check_every, g_steps + 1, check_every))
    if not steps or steps[-1] != g_steps:
        steps.append(g_steps)
    return steps


def counted_checks(g_steps: int, check_every: int, warmup: int) -> list[int]:
    """The checks the collapse detector counts (those at or after the warm-up)."""
    return [s for s in check_steps(g_steps, check_every) if s >= warmup]


def lr_factor(cfg: ToySuiteParams, g_step: int) -> float:
    """The multiplier on both learning rates for the chunk that starts at `g_step`:
    1 until `lr_decay_start` of the budget, then linear down to `lr_final` at the end."""
    start = cfg.lr_decay_start * cfg.g_steps
    if g_step <= start or cfg.g_steps <= start:
        return 1.0
    frac = min((g_step - start) / (cfg.g_steps - start), 1.0)
    return 1.0 - (1.0 - cfg.lr_final) * frac


def snapshot_steps(g_steps: int, n: int, check_every: int) -> list[int]:
    """`n` G steps spread evenly over (0, g_steps], each on a check (or the last step)."""
    out = set()
    for k in range(1, n + 1):
        s = math.ceil(g_steps * k / n / check_every) * check_every
        out.add(min(s, g_steps))
    return sorted(out)


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(ToySuiteParams)]


def toy_skip_reason(arch: str, kind: str) -> str | None:
    """Why a variant has no toy run, or None when it has one (torch-free, so the toy stage
    of such a variant ends before importing torch). Conditional and cycle kinds: the
    mixtures have no labels and no second domain. `arch: dcgan`: its settings (width in
    channels, epochs) are tuned for conv nets on images, and its loss is covered by the MLP
    variant with the same loss."""
    if kind != "unconditional":
        return f"{kind} nets need labelled or paired images"
    if arch == "dcgan":
        return "dcgan nets need images"
    return None
