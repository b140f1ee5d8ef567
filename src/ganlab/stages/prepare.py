"""Stage `prepare`: the dataset named in params -> data/prepared/{train,test}.npz + meta.json.

The built-in sets come from ganlab.data.images.load_dataset; `dataset.name: folder` (your own
images) from ganlab.data.folder, imported here only so that no other stage depends on it."""

from __future__ import annotations

from pathlib import Path

from ganlab.config.params import Params
from ganlab.data.images import load_dataset
from ganlab.data.prepared import PREPARED, write_prepared


def run_prepare(params: Params, out_dir: Path = PREPARED) -> dict:
    # all reading (and every check of a folder dataset) before any writing
    source = None
    if params.dataset.name == "folder":  # only this stage imports the folder reader
        from ganlab.data.folder import load_folder

        train, test, source = load_folder(params.dataset, params.seed)
    else:
        train, test = load_dataset(params.dataset, params.seed)
    return write_prepared(out_dir, params.dataset.name, train, test, source)
