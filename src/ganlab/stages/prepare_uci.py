"""Stage `prepare_uci`: CycleGAN's second domain, scikit-learn's UCI 8x8 digits at 28x28."""

from __future__ import annotations

from pathlib import Path

from ganlab.data.prepared import write_prepared
from ganlab.data.uci import load_uci_digits
from ganlab.runtime.paths import UCI_DIR
from ganlab.util import derive_seed


def run_prepare_uci(params, out_dir: Path = UCI_DIR) -> dict:

    # its own seed stream: the MNIST split's draws must not depend on this one
    train, test = load_uci_digits(params.dataset.test_fraction, derive_seed(params.seed, "uci"))
    return write_prepared(out_dir, "uci_digits", train, test)
