"""Writing a prepared dataset folder (train.npz, test.npz, meta.json with their hashes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ganlab.data.images import Split, save_split
from ganlab.util import file_sha256, write_json

PREPARED = Path("data/prepared")


def write_prepared(out_dir: Path, dataset: str, train: Split, test: Split,
                   source: dict | None = None) -> dict:
    """{train,test}.npz and meta.json (shapes, counts, the files' sha256, and `source`: what a
    folder dataset records of the files it read) in `out_dir`."""
    save_split(out_dir / "train.npz", train)
    save_split(out_dir / "test.npz", test)
    meta = {
        "dataset": dataset,
        "image_shape": list(train.images.shape[1:]),
        "num_classes": int(max(train.labels.max(), test.labels.max()) + 1),
        "n_train": int(len(train.labels)),
        "n_test": int(len(test.labels)),
        "train_class_counts": np.bincount(train.labels).tolist(),
        "train_sha256": file_sha256(out_dir / "train.npz"),
        "test_sha256": file_sha256(out_dir / "test.npz"),
        **(source or {}),
    }
    write_json(out_dir / "meta.json", meta)
    return meta
