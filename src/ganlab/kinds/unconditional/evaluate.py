"""`kind: unconditional`, the evaluate stage's part."""

from __future__ import annotations

from pathlib import Path

from ganlab.kinds.base import ScoringKind
from ganlab.metrics.scoring import ScoringContext, score_sample_file


def score(s: ScoringContext, variant: str, samples_path: Path) -> dict:
    """Every metric of one seed's samples (the same N and references for every seed)."""
    metrics, _ = score_sample_file(s, variant, samples_path)
    return metrics


def summary(metrics: dict, floor: dict, n: int) -> str:
    return (f"fid_judge {metrics.get('fid_judge')} (floor {floor.get('fid_judge')}) on N={n}, "
            f"classes covered {metrics.get('classes_covered')}")


KIND = ScoringKind(name="unconditional", score=score, summary=summary, sample_file="samples.npz",
                   compares_to_floor=True)
