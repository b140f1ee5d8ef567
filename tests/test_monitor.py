"""Quality vs compute during training, the collapse detector in the image loop, budget_scale."""

import dataclasses
import json

import pytest
import torch
import yaml

from ganlab.config.params import ParamsError, parse_params
from ganlab.kinds.base import TrainState
from ganlab.stages.judge import run_judge
from ganlab.stages.prepare import run_prepare
from ganlab.stages.train import run_train

from .conftest import REPO


@pytest.fixture
def judged(in_tmp, tiny_params):
    run_prepare(tiny_params)
    run_judge(tiny_params)
    return tiny_params


def _with(params, variant="gan", **monitor):
    return dataclasses.replace(params, monitor=dataclasses.replace(params.monitor, **monitor),
                               variants={variant: params.variants[variant]})


def test_snapshots_leave_training_bit_identical_and_the_quality_stage_scores_them(judged, in_tmp):
    from ganlab.stages.quality import run_quality

    weights = []
    for every in (1, 0):
        params = _with(judged, "gan", every=every)
        run_train(params, "gan", echo=lambda *_: None)
        weights.append(torch.load(in_tmp / "models/variants/gan/generator.pt")["state_dict"])
        if every:
            snaps = sorted((in_tmp / "models/variants/gan/snapshots").glob("step_*.pt"))
            last = torch.load(snaps[-1], weights_only=True)["state_dict"]
            timing = json.loads((in_tmp / "models/variants/gan/timing.json").read_text())
            summary = run_quality(params, "gan", echo=lambda *_: None)
            lines = (in_tmp / "metrics/quality/gan.csv").read_text().splitlines()
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    # the last snapshot is the sampler that was exported: the quality stage scores real weights
    assert all(torch.equal(last[k], weights[0][k]) for k in last)

    header = lines[0].split(",")
    rows = [dict(zip(header, map(float, line.split(",")))) for line in lines[1:]]
    epochs = judged.variants["gan"].epochs
    assert len(rows) == len(snaps) == epochs and [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    assert all(b["gflops"] > a["gflops"] > 0 for a, b in zip(rows, rows[1:]))
    assert all(r["fid_judge"] > 0 and 0 <= r["recall_judge"] <= 1 for r in rows)
    assert [s[0] for s in timing["quality_seconds"]] == [r["step"] for r in rows]
    assert summary["monitor_fid_judge"] == pytest.approx(rows[-1]["fid_judge"], rel=1e-5)
    # a changed scoring setting rescores the same snapshots without training: fewer images
    # give another FID from the same weights
    fewer = run_quality(_with(params, "gan", every=1, n_samples=32), "gan", echo=lambda *_: None)
    assert fewer["checks"] == epochs and fewer["monitor_fid_judge"] != summary["monitor_fid_judge"]


def test_the_judge_space_detector_flags_one_repeated_digit(judged, in_tmp):
    from ganlab.core.collapse import CollapseDetector, mean_pairwise_distance
    from ganlab.data.images import load_split, to_unit_range
    from ganlab.nets.judge import JudgeExtractor, load_judge

    # the quality stage's signal: held-out digits are as diverse as the training digits, one
    # repeated digit is not
    ext = JudgeExtractor(load_judge(), torch.device("cpu"))
    train = to_unit_range(load_split(in_tmp / "data/prepared/train.npz").images)
    test = to_unit_range(load_split(in_tmp / "data/prepared/test.npz").images)
    spread = mean_pairwise_distance(ext(train[:60])[0])
    det = CollapseDetector(judged.monitor.collapse_threshold, 2, mode="max")
    for s in (1, 2, 3):
        det.update(s, mean_pairwise_distance(ext(test[:60])[0]) / spread)
    assert min(v for _, v in det.history) > judged.monitor.collapse_threshold and det.warnings == 0
    for s in (4, 5):
        det.update(s, mean_pairwise_distance(ext(test[:1].repeat(60, 1, 1, 1))[0]) / spread)
    assert det.warnings == 1 and det.best_step in (1, 2, 3)


def _collapse_params(judged):
    # a threshold no generator reaches makes every check count as collapsed
    params = _with(judged, "gan", every=1, collapse_threshold=100.0, collapse_patience=2,
                   early_stop_on_collapse=True)
    return dataclasses.replace(params, variants={"gan": dataclasses.replace(
        params.variants["gan"], epochs=4)})


def test_early_stop_on_collapse_needs_no_judge_and_keeps_the_most_diverse(judged, in_tmp):
    from ganlab.stages.quality import run_quality

    params = _collapse_params(judged)
    (in_tmp / "models/judge/judge.pt").rename(in_tmp / "judge.pt")  # training must not read it
    said = []
    summary = run_train(params, "gan", echo=said.append)
    assert summary["collapse_warnings_pixels"] == 1 and summary["stopped_early"]
    assert any("collapse warning" in s for s in said)
    assert summary["g_steps"] == 2 * (300 // 32)  # stopped after the 2nd of 4 epochs
    best = summary["best_diversity_step"]
    snap = torch.load(in_tmp / f"models/variants/gan/snapshots/step_{best:07d}.pt")["state_dict"]
    kept = torch.load(in_tmp / "models/variants/gan/generator.pt")["state_dict"]
    assert all(torch.equal(snap[k], kept[k]) for k in kept)
    # stopped at epoch 2, before any progress flush (progress_every 4): the stop flushes the
    # kept generator's grid and every row
    out = in_tmp / "models/variants/gan"
    assert [p.name for p in (out / "progress").iterdir()] == ["epoch_002.png"]
    from ganlab.tracking import runs as tracking

    c, _ = tracking.client()
    hist = c.get_metric_history(tracking.read_run_file(out / "mlflow_run.json"), "d_loss")
    assert len(hist) == summary["g_steps"] // params.variants["gan"].log_every
    (in_tmp / "judge.pt").rename(in_tmp / "models/judge/judge.pt")
    q = run_quality(params, "gan", echo=lambda *_: None)  # the judge-space view of the same run
    assert q["checks"] == 2 and q["collapse_warnings"] == 1


def test_early_stop_resumes_exactly_after_a_kill_past_the_best_check(judged, in_tmp, monkeypatch):
    import ganlab.stages.train as tr
    from tests.conftest import die_after_epochs

    params = _collapse_params(judged)
    whole = run_train(params, "gan", echo=lambda *_: None)
    expected = (in_tmp / "models/variants/gan/generator.pt").read_bytes()
    assert whole["stopped_early"]
    # killed after the first check (the best so far), then resumed from its checkpoint
    monkeypatch.setattr(tr, "CHECKPOINT_EVERY_SECONDS", 0.0)
    original = die_after_epochs(tr, monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        tr.run_train(params, "gan", echo=lambda *_: None)
    monkeypatch.setattr(tr, "timed_epoch", original)
    said = []
    resumed = tr.run_train(params, "gan", echo=said.append)
    assert "resuming" in said[0]
    assert resumed["best_diversity_step"] == whole["best_diversity_step"]
    assert (in_tmp / "models/variants/gan/generator.pt").read_bytes() == expected


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
    from ganlab.kinds.unconditional.train import GanTrainer
    from ganlab.runtime.monitor import count_step_flops

    tiny_raw["variants"] = {"v": spec}
    params = parse_params(tiny_raw)
    real = torch.rand((64, 1, 28, 28), generator=torch.Generator().manual_seed(0)) * 2 - 1
    cycle, d_only = count_step_flops(lambda: GanTrainer(params, "v", real, torch.device("cpu")), TrainState())
    plain = count_step_flops(lambda: GanTrainer(parse_params({**tiny_raw, "variants": {"v": {}}}), "v",
                                                real, torch.device("cpu")), TrainState())[0]
    assert cycle > 0 and (d_only > 0) == (spec.get("n_critic", 1) > 1)
    if spec.get("gp") or spec.get("r1"):
        assert cycle > plain  # the penalty's second backward is counted
