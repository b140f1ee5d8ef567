"""Quality vs compute during training, the collapse detector in the image loop, budget_scale."""

import dataclasses
import json

import pytest
import torch
import yaml

from ganlab.judge import run_judge
from ganlab.params import ParamsError, parse_params
from ganlab.prepare import run_prepare
from ganlab.train import run_train

from .conftest import REPO


@pytest.fixture
def judged(in_tmp, tiny_params):
    run_prepare(tiny_params)
    run_judge(tiny_params)
    return tiny_params


def _with(params, variant="gan", **monitor):
    return dataclasses.replace(params, monitor=dataclasses.replace(params.monitor, **monitor),
                               variants={variant: params.variants[variant]})


def test_scoring_during_training_leaves_weights_bit_identical_and_counts_compute(judged, in_tmp):
    weights, summaries = [], []
    for every in (1, 0):
        params = _with(judged, "gan", every=every)
        summaries.append(run_train(params, "gan", echo=lambda *_: None))
        weights.append(torch.load(in_tmp / "models/variants/gan/generator.pt")["state_dict"])
        if every:
            lines = (in_tmp / "metrics/quality/gan.csv").read_text().splitlines()
            timing = json.loads((in_tmp / "models/variants/gan/timing.json").read_text())
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])

    header = lines[0].split(",")
    rows = [dict(zip(header, map(float, line.split(",")))) for line in lines[1:]]
    assert len(rows) == judged.variants["gan"].epochs
    # FLOPs grow linearly with G steps: the same per-step count at every check
    per_step = [r["gflops"] / r["step"] for r in rows]
    assert per_step[0] > 0 and per_step == pytest.approx([per_step[0]] * len(rows), rel=1e-3)
    assert all(r["fid_judge"] > 0 and 0 <= r["recall_judge"] <= 1 for r in rows)
    assert [s[0] for s in timing["quality_seconds"]] == [r["step"] for r in rows]
    assert summaries[0]["monitor_fid_judge"] == pytest.approx(rows[-1]["fid_judge"], rel=1e-5)


def test_collapse_detector_in_the_image_loop(judged, in_tmp):
    from ganlab.data.images import load_split, to_unit_range
    from ganlab.judge_net import JudgeExtractor, load_judge
    from ganlab.monitor import QualityMonitor

    # the signal: held-out digits are as diverse as the training digits, one repeated digit is not
    ext = JudgeExtractor(load_judge(), torch.device("cpu"))
    train = to_unit_range(load_split(in_tmp / "data/prepared/train.npz").images)
    test = to_unit_range(load_split(in_tmp / "data/prepared/test.npz").images)
    mon = QualityMonitor(judged, "gan", train, ext, lambda n, g: torch.randn(n, 2, generator=g), 1.0, 0.0)
    healthy = [mon.check(test[:60], s, s, s, 0.0, dict)["diversity_judge"] for s in (1, 2, 3)]
    assert min(healthy) > judged.monitor.collapse_threshold and mon.detector.warnings == 0
    collapsed = test[:1].repeat(60, 1, 1, 1)
    for s in (4, 5):
        mon.check(collapsed, s, s, s, 0.0, dict)
    assert mon.detector.warnings == 1 and mon.detector.best_step in (1, 2, 3)

    # in training: a threshold no generator reaches makes every check count as collapsed
    params = _with(judged, "gan", every=1, collapse_threshold=100.0, collapse_patience=2,
                   early_stop_on_collapse=True)
    params = dataclasses.replace(params, variants={"gan": dataclasses.replace(
        params.variants["gan"], epochs=4)})
    said = []
    summary = run_train(params, "gan", echo=said.append)
    assert summary["collapse_warnings"] == 1 and summary["stopped_early"]
    assert any("collapse warning" in s for s in said)
    assert summary["g_steps"] == 2 * (300 // 32)  # stopped after the 2nd of 4 epochs


def test_budget_scale_scales_every_budget():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    base = parse_params(raw)
    raw["budget_scale"] = 2.5
    scaled = parse_params(raw)
    for name, v in base.variants.items():
        assert scaled.variants[name].epochs == round(v.epochs * 2.5)
    assert scaled.toy.g_steps == round(base.toy.g_steps * 2.5)


def test_monitor_that_cannot_fire_is_rejected(tiny_raw):
    tiny_raw["monitor"].update({"every": 1, "collapse_patience": 5})  # tiny runs are 2 epochs
    with pytest.raises(ParamsError, match=r"monitor\.collapse_patience"):
        parse_params(tiny_raw)
    tiny_raw["budget_scale"] = 0
    with pytest.raises(ParamsError, match="budget_scale"):
        parse_params(tiny_raw)


@pytest.mark.parametrize("spec", [{"loss": "nonsaturating"},
                                  {"loss": "wasserstein", "gp": 10.0, "n_critic": 2},
                                  {"loss": "hinge", "r1": 1.0}])
def test_flops_are_counted_through_double_backward_penalties(tiny_raw, spec):
    from ganlab.monitor import count_step_flops
    from ganlab.train import GanTrainer

    tiny_raw["variants"] = {"v": spec}
    params = parse_params(tiny_raw)
    real = torch.rand((64, 1, 28, 28), generator=torch.Generator().manual_seed(0)) * 2 - 1
    cycle, d_only = count_step_flops(lambda: GanTrainer(params, "v", real, torch.device("cpu")))
    plain = count_step_flops(lambda: GanTrainer(parse_params({**tiny_raw, "variants": {"v": {}}}), "v",
                                                real, torch.device("cpu")))[0]
    assert cycle > 0 and (d_only > 0) == (spec.get("n_critic", 1) > 1)
    if spec.get("gp") or spec.get("r1"):
        assert cycle > plain  # the penalty's second backward is counted
