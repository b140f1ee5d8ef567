"""The report's main table: its metric columns, shared by stage `report` (a row per variant
beside the floor) and `ganlab score` (the same row for any set of images)."""

from __future__ import annotations

# (column title, metrics key, format); lower is better for fid/kid/kl, higher for the rest
COLUMNS = [
    ("fid_judge ↓", "fid_judge", "{:.3f}"),
    ("kid_judge ↓", "kid_judge_mean", "{:.4f}"),
    ("is_judge ↑", "is_judge_mean", "{:.2f}"),
    ("precision ↑", "precision_judge", "{:.3f}"),
    ("recall ↑", "recall_judge", "{:.3f}"),
    ("density", "density_judge", "{:.3f}"),
    ("coverage ↑", "coverage_judge", "{:.3f}"),
    ("classes", "classes_covered", "{:.0f}"),
    ("class KL ↓", "class_kl_uniform", "{:.3f}"),
    ("mem ratio", "mem_ratio_median", "{:.3f}"),
]


def metric_cells(metrics: dict) -> list[str]:
    """The COLUMNS cells of one row; – for a value that is missing (or null: not finite)."""
    return ["–" if metrics.get(k) is None else f.format(metrics[k]) for _, k, f in COLUMNS]
