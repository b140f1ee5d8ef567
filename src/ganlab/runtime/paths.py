"""Where the stages put what they write: one place for every path two stages share."""

from __future__ import annotations

from pathlib import Path

from ganlab.config.params import Params
from ganlab.util import GanlabError

PREPARED_DIR = Path("data/prepared")
VARIANTS_DIR = Path("models/variants")
UCI_DIR = Path("data/uci")

JUDGE_PATH = Path("models/judge/judge.pt")


# The UCI domain's own judge (same CNN, trained on the UCI digits): CycleGAN's translations into
# UCI are scored by a classifier of UCI digits, and their fid_judge_uci in its feature space.
UCI_JUDGE_PATH = Path("models/judge_uci/judge.pt")

FLOOR_PATH = Path("metrics/floor.json")

SAMPLES_DIR = Path("samples")


def generator_path(params: Params, variant: str, seed: int | None = None) -> Path:
    """models/variants/<V>[/seeds/<s>]/generator.pt of training seed `seed`; an error naming
    the file and the command that writes it when it is missing."""
    path = Path("models/variants") / variant / params.seed_dir(params.training_seed(seed)) / "generator.pt"
    if not path.exists():
        raise GanlabError(f"{path}: generator not found (run `ganlab train {variant}` first)")
    return path
