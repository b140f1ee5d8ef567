"""`kind: cycle`, the evaluate stage's part."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ganlab.config.params import Params
from ganlab.data.images import Split, load_split, to_unit_range
from ganlab.kinds.base import ScoringKind
from ganlab.metrics.conditional import cycle_l1, label_preservation
from ganlab.metrics.fid import fid
from ganlab.metrics.scoring import ScoringContext, judge_accuracy
from ganlab.nets.judge import JudgeExtractor, load_judge
from ganlab.runtime.paths import UCI_DIR, UCI_JUDGE_PATH
from ganlab.util import GanlabError, read_npz


def _np(t: torch.Tensor) -> np.ndarray:
    return t.numpy().astype(np.float64)


TRANSLATION_KEYS = ("a", "a_labels", "ab", "aba", "b", "b_labels", "ba", "bab")


def cycle_metrics(params: Params, variant: str, path: Path, ext_mnist, mnist_train: Split,
                   mnist_test: Split, device: torch.device) -> dict[str, float]:

    ext_uci = JudgeExtractor(load_judge(UCI_JUDGE_PATH, device=device), device)
    uci_train = load_split(UCI_DIR / "train.npz")
    t = read_npz(path, f"ganlab sample {variant}", TRANSLATION_KEYS)
    for k in ("a", "ab", "aba", "b", "ba", "bab"):  # pixels, checked before any scoring
        if t[k].dtype != np.uint8 or t[k].ndim != 4 or tuple(t[k].shape[1:]) != mnist_train.images.shape[1:]:
            raise GanlabError(f"{path}: `{k}` must be uint8 images (N, "
                              f"{', '.join(map(str, mnist_train.images.shape[1:]))}), got "
                              f"{t[k].dtype} {t[k].shape}; rerun `ganlab sample {variant}`")
    u = {k: to_unit_range(t[k]) for k in ("a", "ab", "aba", "b", "ba", "bab")}
    # translations into B are scored by B's judge, into A by A's
    _, p_ab = ext_uci(u["ab"])
    _, p_a_raw = ext_uci(u["a"])
    _, p_ba = ext_mnist(u["ba"])
    _, p_b_raw = ext_mnist(u["b"])
    n = min(len(t["a"]), len(t["b"]))  # one N for both directions and both floors
    f_ab, _ = ext_uci(u["ab"][:n])
    f_uci_train, _ = ext_uci(to_unit_range(uci_train.images))
    f_ba, _ = ext_mnist(u["ba"][:n])
    f_mnist_train, _ = ext_mnist(to_unit_range(mnist_train.images))
    f_mnist_test, _ = ext_mnist(to_unit_range(mnist_test.images[:n]))
    f_uci_test, _ = ext_uci(u["b"][:n])
    out = {
        "preserve_mnist_to_uci": label_preservation(_np(p_ab), t["a_labels"]),
        "preserve_uci_to_mnist": label_preservation(_np(p_ba), t["b_labels"]),
        "preserve_mnist_to_uci_untranslated": label_preservation(_np(p_a_raw), t["a_labels"]),
        "preserve_uci_to_mnist_untranslated": label_preservation(_np(p_b_raw), t["b_labels"]),
        "chance": 1.0 / int(mnist_train.labels.max() + 1),
        "judge_uci_test_accuracy": judge_accuracy(Path("metrics/judge_uci.json")),
        "judge_test_accuracy": judge_accuracy(Path("metrics/judge.json")),
        "cycle_l1_mnist": cycle_l1(_np(u["a"]), _np(u["aba"])),
        "cycle_l1_uci": cycle_l1(_np(u["b"]), _np(u["bab"])),
        "fid_judge_uci_translated": fid(_np(f_ab), _np(f_uci_train)),
        "fid_judge_uci_floor": fid(_np(f_uci_test), _np(f_uci_train)),
        "fid_judge_mnist_translated": fid(_np(f_ba), _np(f_mnist_train)),
        "fid_judge_mnist_floor": fid(_np(f_mnist_test), _np(f_mnist_train)),
        "n_fid": float(n),
    }
    return {k: round(float(v), 6) for k, v in out.items()}


def score(s: ScoringContext, variant: str, samples_path: Path) -> dict:
    return cycle_metrics(s.params, variant, samples_path, s.judge, s.train, s.test, s.device)


def summary(metrics: dict, floor: dict, n: int) -> str:
    return (f"label preservation MNIST->UCI {metrics['preserve_mnist_to_uci']:.3f}, "
            f"UCI->MNIST {metrics['preserve_uci_to_mnist']:.3f}; "
            f"cycle L1 {metrics['cycle_l1_mnist']:.3f}/{metrics['cycle_l1_uci']:.3f}")


KIND = ScoringKind(name="cycle", score=score, summary=summary, sample_file="translations.npz",
                   compares_to_floor=False)
