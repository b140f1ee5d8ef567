"""Stage `evaluate` for the conditional and cycle kinds (evaluate.py dispatches here).

Every number sits beside the reference it must be read against, computed at the same N:
- conditional accuracy beside the judge's held-out accuracy (its ceiling);
- intra-FID of class c (generated class c vs train class c) beside the same FID for held-out
  real class-c images (the per-class floor), both with n = the held-out count of the class;
- label preservation of translations beside chance (1/10) and beside the target judge's
  accuracy on *untranslated* sources (what doing nothing would score);
- fid_judge of translations into a domain beside that domain's real-vs-real floor at the
  same N (the held-out count of the smaller test set).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ganlab.data.images import Split, load_split, to_unit_range
from ganlab.metrics.conditional import (
    conditional_accuracy,
    cycle_l1,
    label_preservation,
    per_class_accuracy,
    per_class_fid,
)
from ganlab.metrics.fid import fid
from ganlab.params import Params
from ganlab.util import GanlabError


def _judge_accuracy(path: Path) -> float:
    if not path.exists():
        raise GanlabError(f"{path}: not found (run the judge stage first: `dvc repro`)")
    return float(json.loads(path.read_text())["judge_test_accuracy"])


def evaluate_conditional(params: Params, ext, samples: np.ndarray, labels: np.ndarray,
                         train: Split, test: Split) -> dict[str, float]:
    num_classes = int(train.labels.max() + 1)
    gen_feats, gen_probs = (t.numpy().astype(np.float64) for t in ext(to_unit_range(samples)))
    train_feats = ext(to_unit_range(train.images))[0].numpy().astype(np.float64)
    test_feats = ext(to_unit_range(test.images))[0].numpy().astype(np.float64)
    # one N for every class and its floor: the smaller of the held-out and generated counts
    n_pc = int(min(np.bincount(test.labels, minlength=num_classes).min(),
                   np.bincount(labels, minlength=num_classes).min()))
    intra = per_class_fid(gen_feats, labels, train_feats, train.labels, num_classes, n_pc)
    floor = per_class_fid(test_feats, test.labels, train_feats, train.labels, num_classes, n_pc)
    acc_c = per_class_accuracy(gen_probs, labels, num_classes)
    out = {
        "conditional_accuracy": conditional_accuracy(gen_probs, labels),
        "judge_test_accuracy": _judge_accuracy(Path("metrics/judge.json")),
        "intra_fid_judge_mean": float(np.mean(intra)),
        "intra_fid_floor_mean": float(np.mean(floor)),
        "intra_fid_n_per_class": float(n_pc),
    }
    for c in range(num_classes):
        out[f"intra_fid_judge_c{c}"] = intra[c]
        out[f"intra_fid_floor_c{c}"] = floor[c]
        out[f"conditional_accuracy_c{c}"] = acc_c[c]
    return {k: round(float(v), 6) for k, v in out.items()}


def _np(t: torch.Tensor) -> np.ndarray:
    return t.numpy().astype(np.float64)


def evaluate_cycle(params: Params, variant: str, path: Path, ext_mnist, mnist_train: Split,
                   mnist_test: Split, device: torch.device) -> dict[str, float]:
    from ganlab.data.uci import UCI_DIR
    from ganlab.judge_net import UCI_JUDGE_PATH, JudgeExtractor, load_judge

    ext_uci = JudgeExtractor(load_judge(UCI_JUDGE_PATH, device=device), device)
    uci_train = load_split(UCI_DIR / "train.npz")
    with np.load(path) as z:
        t = {k: z[k] for k in z.files}
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
        "judge_uci_test_accuracy": _judge_accuracy(Path("metrics/judge_uci.json")),
        "judge_test_accuracy": _judge_accuracy(Path("metrics/judge.json")),
        "cycle_l1_mnist": cycle_l1(_np(u["a"]), _np(u["aba"])),
        "cycle_l1_uci": cycle_l1(_np(u["b"]), _np(u["bab"])),
        "fid_judge_uci_translated": fid(_np(f_ab), _np(f_uci_train)),
        "fid_judge_uci_floor": fid(_np(f_uci_test), _np(f_uci_train)),
        "fid_judge_mnist_translated": fid(_np(f_ba), _np(f_mnist_train)),
        "fid_judge_mnist_floor": fid(_np(f_mnist_test), _np(f_mnist_train)),
        "n_fid": float(n),
    }
    return {k: round(float(v), 6) for k, v in out.items()}
