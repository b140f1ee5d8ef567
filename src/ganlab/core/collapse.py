"""Mode-collapse detection from a cheap diversity signal.

`diversity_signal` compares the spread of a fixed-noise batch of generated points with the
spread of real data: the mean pairwise Euclidean distance, generated over real. A generator
as spread out as the data scores ~1; one that maps all noise to a single point scores 0.
It cannot see *which* modes are missing (a generator covering two opposite modes of the
ring is "diverse"), so it flags collapse, not coverage; `score_modes` measures coverage.

`CollapseDetector` turns the per-check signal into a warning that needs `patience`
consecutive bad checks, so one noisy check does not fire it, and remembers the best check
so a caller can keep that generator.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

MODES = ("max", "min")


def mean_pairwise_distance(x: Tensor) -> float:
    """Mean Euclidean distance over all pairs i < j of rows of `x` (flattened per row).

    Self-pairs are excluded, so the value does not depend on the batch size in
    expectation: a batch of 256 and one of 2,500 from the same law estimate the same number.
    """
    x = x.detach().flatten(1).double()
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 samples, got {x.shape[0]}")
    return float(torch.pdist(x).mean())


def diversity_signal(samples: Tensor, reference: Tensor | float) -> float:
    """Mean pairwise distance of `samples` over that of `reference` (real data).

    `reference` may be the real points or their precomputed `mean_pairwise_distance`,
    so a training loop pays for the real-data statistic once.
    """
    ref = reference if isinstance(reference, float | int) else mean_pairwise_distance(reference)
    if not ref > 0:
        raise ValueError(f"reference spread must be > 0, got {ref}")
    return mean_pairwise_distance(samples) / float(ref)


class CollapseDetector:
    """Fires when the signal has been on the bad side of `threshold` for `patience` checks.

    mode "max": higher is better (the diversity signal); bad = below the threshold, and
    the best check is the highest signal. mode "min": lower is better; bad = above it.
    A non-finite signal (a diverged run) always counts as bad and is never the best.
    """

    def __init__(self, threshold: float, patience: int = 3, mode: str = "max"):
        if mode not in MODES:
            raise ValueError(f"mode: {mode!r} is not one of {', '.join(MODES)}")
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.threshold = float(threshold)
        self.patience = int(patience)
        self.mode = mode
        self.streak = 0  # consecutive bad checks so far
        self.warnings = 0  # collapse episodes: times the streak reached `patience`
        self.best_step: int | None = None
        self.best_signal: float | None = None
        self.min_signal = math.inf
        self.improved = False  # whether the last update set a new best
        self.history: list[tuple[int, float]] = []

    def _bad(self, signal: float) -> bool:
        if not math.isfinite(signal):
            return True
        return signal < self.threshold if self.mode == "max" else signal > self.threshold

    def _better(self, signal: float) -> bool:
        if not math.isfinite(signal):
            return False
        if self.best_signal is None:
            return True
        return signal > self.best_signal if self.mode == "max" else signal < self.best_signal

    def update(self, step: int, signal: float) -> bool:
        """Record one check; True while collapsed (streak of bad checks >= patience)."""
        signal = float(signal)
        self.history.append((int(step), signal))
        if math.isfinite(signal):
            self.min_signal = min(self.min_signal, signal)
        self.improved = self._better(signal)
        if self.improved:
            self.best_step, self.best_signal = int(step), signal
        if self._bad(signal):
            self.streak += 1
            if self.streak == self.patience:
                self.warnings += 1
        else:
            self.streak = 0
        return self.streak >= self.patience

    @property
    def collapsed(self) -> bool:
        return self.streak >= self.patience
