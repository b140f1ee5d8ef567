"""CyCADA's semantic-consistency loss in the cycle kind (`cycle.semantic`, issue 23)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ganlab.config.params import parse_params
from ganlab.util import GanlabError, ParamsError
from tests.conftest import die_after_epochs, prepare_both_domains


def _logits(labels: list[int], margin: float = 40.0) -> torch.Tensor:
    """Hand-made logits: `margin` on each row's class, 0 elsewhere (softmax ~ one-hot)."""
    out = torch.zeros(len(labels), 10)
    out[torch.arange(len(labels)), torch.tensor(labels)] = margin
    return out


def test_semantic_loss_is_zero_when_the_label_is_kept_and_large_when_flipped():
    from ganlab.kinds.cycle.semantic import semantic_loss, semantic_term

    a, b = [3, 1, 4, 1, 5], [9, 2, 6, 5, 3]
    # the translations keep their source's label with certainty: L_sem ~ 0
    kept = semantic_loss(_logits(a), _logits(a, 7.0), _logits(b), _logits(b, 2.0))
    assert kept.item() == pytest.approx(0.0, abs=1e-12)
    # every translation is certain of another class: CE ~ margin per direction
    flip = [(y + 1) % 10 for y in a], [(y + 5) % 10 for y in b]
    flipped = semantic_loss(_logits(flip[0]), _logits(a), _logits(flip[1]), _logits(b))
    assert flipped.item() == pytest.approx(80.0, rel=1e-3)
    # undecided translations (uniform logits) cost log 10 per direction
    flat = torch.zeros(5, 10)
    assert semantic_loss(flat, _logits(a), flat, _logits(b)).item() == pytest.approx(2 * math.log(10))
    # the label is the source's argmax, not a probability: a confident translation of the
    # source's (barely) top class costs nothing
    src = torch.zeros(1, 10)
    src[0, 4] = 0.1
    assert semantic_term(_logits([4]), src.argmax(1)).item() == pytest.approx(0.0, abs=1e-12)


def test_semantic_loss_sends_gradients_to_the_translation_only():
    from ganlab.kinds.cycle.semantic import semantic_loss

    ab, a = _logits([1, 2], 1.0).requires_grad_(), _logits([1, 2]).requires_grad_()
    ba, b = _logits([3, 4], 1.0).requires_grad_(), _logits([4, 3]).requires_grad_()
    semantic_loss(ab, a, ba, b).backward()
    assert ab.grad.abs().sum() > 0 and ba.grad.abs().sum() > 0
    assert a.grad is None and b.grad is None  # the source only names the label


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf")])
def test_semantic_weight_must_be_finite_and_non_negative(tiny_raw, bad):
    tiny_raw["variants"] = {"cy": {"kind": "cycle", "arch": "dcgan", "cycle": {"semantic": bad}}}
    with pytest.raises(ParamsError, match=r"variants\.cy\.cycle\.semantic"):
        parse_params(tiny_raw)


def test_semantic_weight_defaults_to_plain_cyclegan(tiny_raw):
    tiny_raw["variants"] = {"cy": {"kind": "cycle", "arch": "dcgan"},
                            "cs": {"kind": "cycle", "arch": "dcgan", "cycle": {"semantic": 2}}}
    params = parse_params(tiny_raw)
    assert params.variants["cy"].cycle.semantic == 0.0
    assert params.variants["cs"].cycle.semantic == 2.0


def _digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n toy 'digits': class k is a bright 6x4 block in cell (k // 5, k % 5) of a 2x5 grid,
    cells far enough apart that the 2-pixel shifts of pretraining keep them apart."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 10
    x = torch.rand(n, 1, 28, 28, generator=g) * 0.2 - 1.0
    for i, k in enumerate(y.tolist()):
        r, c = 4 + 12 * (k // 5), 2 + 5 * (k % 5)
        x[i, 0, r : r + 6, c : c + 4] = 1.0
    return x, y


def test_classifier_pretraining_is_seeded_and_records_its_provenance(monkeypatch):
    import ganlab.kinds.cycle.semantic as sem
    from ganlab.kinds.cycle.semantic import train_classifier, weights_sha256

    monkeypatch.setattr(sem, "STEPS", 120)  # the toy digits need fewer steps than real ones
    x, y = _digits(120, 0)
    cpu = torch.device("cpu")
    net1, p1 = train_classifier(x, y, 0, "mnist", cpu)
    net2, p2 = train_classifier(x, y, 0, "mnist", cpu)
    net3, p3 = train_classifier(x, y, 1, "mnist", cpu)
    with torch.no_grad():  # as the quality stage builds the trainer: the same net, trained
        net4, p4 = train_classifier(x, y, 0, "mnist", cpu)
    assert p4["weights_sha256"] == p1["weights_sha256"]
    s1, s2, s3 = net1.state_dict(), net2.state_dict(), net3.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)  # reproducible
    assert not all(torch.equal(s1[k], s3[k]) for k in s1)  # another seed, another net
    assert p1["weights_sha256"] == p2["weights_sha256"] == weights_sha256(s1)
    assert p1["train_indices_sha256"] != p3["train_indices_sha256"]  # another random half
    assert (p1["n_train"], p1["n_holdout"]) == (60, 60)
    assert p1["holdout_accuracy"] > 0.9
    assert not any(q.requires_grad for q in net1.parameters()) and not net1.training  # frozen


@pytest.fixture
def semantic_project(in_tmp, tiny_raw):
    tiny_raw["variants"] = {
        "cs": {"kind": "cycle", "arch": "dcgan", "width": 4, "batch_size": 128,
               "loss": "least_squares", "epochs": 2, "log_every": 2,
               "cycle": {"res_blocks": 1, "pool_size": 8, "identity": 0.0, "semantic": 1.0}},
    }
    params = parse_params(tiny_raw)
    prepare_both_domains(params)
    return in_tmp, params


def test_semantic_cycle_trains_samples_evaluates_and_resumes(semantic_project, monkeypatch):
    import ganlab.kinds.cycle.semantic as sem
    import ganlab.stages.train as tr
    from ganlab.runtime.paths import JUDGE_PATH, UCI_JUDGE_PATH
    from ganlab.stages.evaluate import run_evaluate
    from ganlab.stages.sample import run_sample
    from ganlab.util import derive_seed, file_sha256

    root, params = semantic_project
    monkeypatch.setattr(sem, "STEPS", 60)  # a tiny run: a few classifier steps are enough
    quiet = lambda *_: None  # noqa: E731
    out = root / "models/variants/cs"
    tr.run_train(params, "cs", echo=quiet)
    full_g = torch.load(out / "generator.pt")["state_dict"]
    full_curves = (root / "metrics/curves/cs.csv").read_text()
    assert "semantic" in full_curves.splitlines()[0]  # the term is logged per step
    saved = torch.load(out / "semantic_classifiers.pt")
    prov = json.loads((out / "semantic_classifiers.json").read_text())
    assert saved["provenance"]["classifiers"]["mnist"]["weights_sha256"] == \
        prov["classifiers"]["mnist"]["weights_sha256"]

    # killed after epoch 1 and resumed in a fresh process's state (no cached classifiers):
    # the same generator and curves as uninterrupted
    monkeypatch.setattr(tr, "CHECKPOINT_EVERY_SECONDS", 0.0)
    original = die_after_epochs(tr, monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        tr.run_train(params, "cs", echo=quiet)
    monkeypatch.setattr(tr, "timed_epoch", original)
    sem._CACHE.clear()
    said: list[str] = []
    tr.run_train(params, "cs", echo=said.append)
    assert "resuming" in said[0]
    resumed = torch.load(out / "generator.pt")["state_dict"]
    assert all(torch.equal(full_g[k], resumed[k]) for k in full_g)
    assert (root / "metrics/curves/cs.csv").read_text() == full_curves
    again = torch.load(out / "semantic_classifiers.pt")
    for d in ("mnist", "uci"):
        assert all(torch.equal(saved["state_dict"][d][k], again["state_dict"][d][k])
                   for k in saved["state_dict"][d])

    # the classifiers the generators trained against are not the judges that score them
    for d, judge_path in (("mnist", JUDGE_PATH), ("uci", UCI_JUDGE_PATH)):
        judge = torch.load(root / judge_path)["state_dict"]
        mine = saved["state_dict"][d]
        assert set(judge) != set(mine) or any(judge[k].shape != mine[k].shape for k in judge)
        assert file_sha256(root / judge_path) != file_sha256(out / "semantic_classifiers.pt")
        c = prov["classifiers"][d]
        assert c["seed"] != derive_seed(params.seed, "judge", "init")  # the judges' seed
        assert c["arch"] == sem.ARCH and "half" in c["split"]
        assert c["n_train"] < c["n_train"] + c["n_holdout"]  # the judge saw the whole split
        assert 0.0 <= c["holdout_accuracy"] <= 1.0
    assert "not the judges" in prov["role"]

    # the quality stage builds its trainer to generate only: no classifier is pretrained, and
    # the snapshots score as they do through a trainer that has them
    import ganlab.stages.quality as q
    from ganlab.kinds.training import build_trainer
    from ganlab.nets.judge import JudgeExtractor, load_judge

    def no_pretraining(*_a, **_k):
        raise AssertionError("the quality stage pretrained a semantic classifier")

    with monkeypatch.context() as m:
        m.setattr(sem, "train_classifier", no_pretraining)
        sem._CACHE.clear()
        q.run_quality(params, "cs", echo=quiet)
    assert (root / "metrics/quality/cs.csv").read_text().count("\n") > 1  # a header and rows
    generate_only = build_trainer(params, "cs", root / "data/prepared", torch.device("cpu"),
                                  generate_only=True)
    assert "sem" not in generate_only.modules
    with pytest.raises(GanlabError, match="generate only"):
        generate_only.begin_epoch(0)
    with monkeypatch.context() as m:  # the same rows through a full trainer (classifiers built)
        m.setattr(q, "build_trainer", lambda *a, generate_only=False: build_trainer(*a))
        cpu = torch.device("cpu")
        real = q.to_unit_range(q.load_split(root / "data/prepared/train.npz").images)
        rows, _ = q.score_snapshots(params, "cs", params.seeds[0],
                                    JudgeExtractor(load_judge(device=cpu), cpu), real, cpu,
                                    root / "data/prepared")
    written = (root / "metrics/quality/cs.csv").read_text()
    q.write_quality_csv(root / "full.csv", rows)
    assert (root / "full.csv").read_text() == written

    run_sample(params, "cs", echo=quiet)
    m = run_evaluate(params, "cs", echo=quiet)
    assert all(np.isfinite(x) for x in m.values())
    assert 0.0 <= m["preserve_mnist_to_uci"] <= 1.0 and 0.0 <= m["preserve_uci_to_mnist"] <= 1.0
    with np.load(root / "samples/cs/translations.npz") as z:  # the layout others re-check
        assert sorted(z.files) == ["a", "a_labels", "ab", "aba", "b", "b_labels", "ba", "bab"]
        assert z["ab"].shape == z["a"].shape and z["ab"].dtype == np.uint8


def test_training_never_loads_the_judges():
    """The semantic classifiers are trained in the cycle kind; nothing it imports reads a judge."""
    import ast
    from pathlib import Path

    import ganlab.kinds.cycle.semantic as sem
    import ganlab.kinds.cycle.train as cyc

    for mod in (sem, cyc):
        tree = ast.parse(Path(mod.__file__).read_text())
        names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert "ganlab.nets.judge" not in names
        assert "JUDGE_PATH" not in Path(mod.__file__).read_text()


def test_report_shows_plain_and_semantic_rows_and_names_who_scores(in_tmp, tiny_raw):
    from ganlab.stages.report import _cycle_section
    from ganlab.util import write_json

    cycle = {"kind": "cycle", "arch": "dcgan"}
    tiny_raw["variants"] = {"cy_plain": cycle, "cy": {**cycle, "cycle": {"semantic": 1.0}}}
    params = parse_params(tiny_raw)
    write_json(in_tmp / "metrics/judge.json", {"judge_test_accuracy": 0.97})
    write_json(in_tmp / "metrics/judge_uci.json", {"judge_test_accuracy": 0.98})
    ev = {"preserve_mnist_to_uci": 0.9, "preserve_uci_to_mnist": 0.85,
          "preserve_mnist_to_uci_untranslated": 0.26, "preserve_uci_to_mnist_untranslated": 0.65,
          "chance": 0.1, "cycle_l1_mnist": 0.1, "cycle_l1_uci": 0.1,
          "fid_judge_uci_translated": 5.0, "fid_judge_uci_floor": 1.0,
          "fid_judge_mnist_translated": 6.0, "fid_judge_mnist_floor": 1.0}
    for v in ("cy_plain", "cy"):
        write_json(in_tmp / f"metrics/eval/{v}.json", ev)
        write_json(in_tmp / f"models/variants/{v}/timing.json", {"train_seconds": 30.0})
    cls = {"arch": "small net", "holdout_accuracy": 0.95, "seconds": 2.0}
    write_json(in_tmp / "models/variants/cy/semantic_classifiers.json",
               {"classifiers": {"mnist": cls, "uci": cls}})
    text = "\n".join(_cycle_section(params))
    rows = [r for r in text.splitlines() if r.startswith("| **")]
    assert len(rows) == 2 and "| 0 |" in rows[0] and "| 1 |" in rows[1]  # the semantic column
    assert "0.900 (0.260)" in rows[1] and "0.850 (0.650)" in rows[1] and "| 0.10 |" in rows[1]
    assert "30 (+4 classifiers)" in rows[1] and "samples/cy/grid.png" in rows[1]
    assert "models/judge_uci" in text and "models/variants/cy/semantic_classifiers.pt" in text
