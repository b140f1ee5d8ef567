"""Stage `prepare`: the dataset named in params -> data/prepared/{train,test}.npz + meta.json."""

from __future__ import annotations

from pathlib import Path

from ganlab.config.params import Params
from ganlab.data.images import load_dataset
from ganlab.data.prepared import PREPARED, write_prepared


def run_prepare(params: Params, out_dir: Path = PREPARED) -> dict:
    train, test = load_dataset(params.dataset, params.seed)  # all reading before any writing
    return write_prepared(out_dir, params.dataset.name, train, test)
