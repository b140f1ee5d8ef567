"""Checkpoints and the resume key: a killed training continues only the exact config.

The key (`config_hash`) covers the settings, the seed, the data, the device, torch's version,
the digest of every ganlab module loaded (`code_digest`) and the number of torchrun processes,
so a checkpoint written by other code, data or settings is never continued.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

from ganlab.config.params import TrainParams
from ganlab.config.parse import flatten
from ganlab.util import save_torch

CHECKPOINTS_DIR = Path(".ganlab/checkpoints")


# A checkpoint (G, D and both optimisers: ~24 MB for the seed MLP) at most this often, always
# at an epoch boundary so a resumed run stays bit-identical. Every epoch cost ~15% of training.
CHECKPOINT_EVERY_SECONDS = 15.0


def code_digest() -> str:
    """sha256 over the source of every ganlab module loaded in this process: the code a
    training actually runs. Part of the resume key, so a checkpoint written by older code
    is never continued by newer code (and recorded by DVC as the newer code's product)."""
    h = hashlib.sha256()
    files = sorted({m.__file__ for name, m in list(sys.modules.items())
                    if (name == "ganlab" or name.startswith("ganlab.")) and getattr(m, "__file__", None)})
    for f in files:
        h.update(f.rsplit("ganlab", 1)[-1].encode())
        with open(f, "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()


def config_hash(p: TrainParams, seed: int, data_sha: str, device: torch.device | str = "cpu",
                code: str = "", world_size: int = 1) -> str:
    """The resume key: settings, seed, data, device, torch version, the code's digest and
    (under torchrun) the number of processes, which sets each rank's shard and noise."""
    key = {"p": flatten(p), "seed": seed, "data": data_sha, "device": str(device),
           "torch": torch.__version__, "code": code}
    if world_size > 1:
        key["world_size"] = world_size
    blob = json.dumps(key, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def save_checkpoint(path: Path, blob: dict) -> None:
    save_torch(blob, path)


def load_checkpoint(path: Path, cfg_hash: str) -> dict | None:
    """The checkpoint at `path` if it belongs to this exact configuration, else None.

    weights_only: a checkpoint holds tensors and plain types only, so nothing in a file
    dropped into .ganlab/ can run code when it is loaded."""
    if not path.exists():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a torn, foreign or unsafe file: start over rather than fail
        return None
    return blob if blob.get("config_hash") == cfg_hash else None
