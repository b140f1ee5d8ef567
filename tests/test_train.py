"""The training loop: every loss/penalty runs, results are deterministic, resume is exact."""

import dataclasses
import json

import pytest
import torch

from ganlab.config.params import parse_params
from ganlab.kinds.base import TrainState
from ganlab.kinds.unconditional.train import GanTrainer
from ganlab.runtime.checkpoint import CHECKPOINTS_DIR
from ganlab.stages.prepare import run_prepare
from ganlab.stages.train import run_train
from tests.conftest import die_after_epochs


def _real(n=96, shape=(1, 28, 28)):
    g = torch.Generator().manual_seed(0)
    return torch.rand((n, *shape), generator=g) * 2 - 1


VARIANTS = {
    "minimax": {"loss": "minimax"},
    "lsgan": {"loss": "least_squares"},
    "wgan": {"loss": "wasserstein", "clip": 0.01, "optimizer": "rmsprop", "n_critic": 2},
    "wgan_gp": {"loss": "wasserstein", "gp": 10.0, "arch": "dcgan", "width": 8, "n_critic": 2},
    "sngan": {"loss": "hinge", "spectral_norm": True, "arch": "dcgan", "width": 8},
    "r1_noise": {"loss": "nonsaturating", "r1": 1.0,
                 "instance_noise": {"std": 0.3, "anneal": "exponential"}, "ema": 0.9},
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_trains_with_finite_diagnostics(tiny_raw, name):
    tiny_raw["variants"] = {name: {**VARIANTS[name], "log_every": 1}}
    params = parse_params(tiny_raw)
    t = GanTrainer(params, name, _real(), torch.device("cpu"))
    state = TrainState()
    rows = t.run_epoch(state)
    assert rows and all(torch.isfinite(torch.tensor(list(r.values()))).all() for r in rows)
    p = params.variants[name]
    assert state.d_step == 3 and state.g_step == 3 // p.n_critic
    if p.clip:
        assert all(q.abs().max() <= p.clip + 1e-9 for q in t.d.parameters())
        assert "clip_frac" in rows[0]
    if p.gp:
        assert "gp" in rows[0]
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in t.d.modules())
    if p.spectral_norm:
        assert rows[-1]["sigma_max"] == pytest.approx(1.0, abs=0.3)
    if p.instance_noise.std:
        assert rows[0]["noise_std"] == p.instance_noise.std > rows[-1]["noise_std"]


def test_dcgan_32x32_three_channels(tiny_raw):
    tiny_raw["variants"] = {"c": {"arch": "dcgan", "width": 8}}
    params = parse_params(tiny_raw)
    t = GanTrainer(params, "c", _real(64, (3, 32, 32)), torch.device("cpu"))
    t.run_epoch(TrainState())
    assert t.g(torch.randn(2, 100)).shape == (2, 3, 32, 32)


def test_same_seed_same_weights_different_seed_differs(tiny_raw):
    params = parse_params(tiny_raw)

    def weights(p):
        t = GanTrainer(p, "gan", _real(), torch.device("cpu"))
        t.run_epoch(TrainState())
        return torch.cat([q.flatten() for q in t.g.parameters()])

    assert torch.equal(weights(params), weights(params))
    assert not torch.equal(weights(params), weights(dataclasses.replace(params, seed=1)))


def _prepared(in_tmp, tiny_params):
    run_prepare(tiny_params)
    # no judge here: the quality monitor (which needs one) has its own tests
    return dataclasses.replace(tiny_params, monitor=dataclasses.replace(tiny_params.monitor, every=0))


def test_interrupted_training_resumes_to_identical_result(in_tmp, tiny_params, monkeypatch):
    import ganlab.stages.train as tr

    monkeypatch.setattr(tr, "CHECKPOINT_EVERY_SECONDS", 0.0)  # checkpoint every epoch here
    params = _prepared(in_tmp, tiny_params)
    params = dataclasses.replace(params, variants={"gan": dataclasses.replace(
        params.variants["gan"], epochs=3)})
    run_train(params, "gan", echo=lambda *_: None)
    full = (in_tmp / "metrics/curves/gan.csv").read_text()
    full_g = torch.load(in_tmp / "models/variants/gan/generator.pt")["state_dict"]
    assert not list((in_tmp / CHECKPOINTS_DIR / "gan").glob("*.pt"))  # removed when done

    # Kill after epoch 2: the epoch hook raises, like a Ctrl-C mid-training.
    original = die_after_epochs(tr, monkeypatch, 2)
    (in_tmp / "metrics/curves/gan.csv").unlink()
    with pytest.raises(KeyboardInterrupt):
        run_train(params, "gan", echo=lambda *_: None)
    assert len(list((in_tmp / CHECKPOINTS_DIR / "gan").glob("*.pt"))) == 1
    monkeypatch.setattr(tr, "timed_epoch", original)
    said = []
    run_train(params, "gan", echo=said.append)
    assert "resuming" in said[0] and "after epoch 2/3" in said[0]
    assert (in_tmp / "metrics/curves/gan.csv").read_text() == full
    resumed_g = torch.load(in_tmp / "models/variants/gan/generator.pt")["state_dict"]
    assert all(torch.equal(full_g[k], resumed_g[k]) for k in full_g)
    # the killed run's rows of epochs 1-2 were still waiting for their flush (progress_every
    # 4): the resumed run logs them, so its MLflow curve has every row of the CSV, once
    from ganlab.tracking import runs as tracking

    run_id = tracking.read_run_file(in_tmp / "models/variants/gan/mlflow_run.json")
    c, _ = tracking.client()
    steps = [m.step for m in c.get_metric_history(run_id, "d_loss")]
    csv_steps = [int(float(line.split(",")[0])) for line in full.splitlines()[1:]]
    assert sorted(steps) == csv_steps


def test_progress_grids_and_mlflow_rows_every_progress_every_epochs(in_tmp, tiny_params):
    """monitor.progress_every 2 over 5 epochs: grids after epochs 2, 4 and the last (5), in
    the output folder and as MLflow image steps (0 is the untrained G); every row in MLflow."""
    params = _prepared(in_tmp, tiny_params)
    params = dataclasses.replace(
        params, monitor=dataclasses.replace(params.monitor, progress_every=2),
        variants={"gan": dataclasses.replace(params.variants["gan"], epochs=5)})
    run_train(params, "gan", echo=lambda *_: None)
    out = in_tmp / "models/variants/gan"
    assert sorted(p.name for p in (out / "progress").iterdir()) == [
        "epoch_002.png", "epoch_004.png", "epoch_005.png"]
    from ganlab.tracking import runs as tracking

    run_id = tracking.read_run_file(out / "mlflow_run.json")
    c, _ = tracking.client()
    steps = {int(a.path.split("+step+")[1].split("+")[0])
             for a in c.list_artifacts(run_id, "images") if a.path.endswith(".png")}
    assert steps == {0, 2, 4, 5}
    csv = (in_tmp / "metrics/curves/gan.csv").read_text().splitlines()[1:]
    assert sorted(m.step for m in c.get_metric_history(run_id, "g_loss")) == [
        int(float(line.split(",")[0])) for line in csv]
    timing = json.loads((out / "timing.json").read_text())
    assert 0 < timing["loop_train_seconds"] <= timing["loop_seconds"]
    assert timing["loop_monitor_seconds"] == 0  # monitor off here


def test_train_writes_outputs_and_mlflow_run(in_tmp, tiny_params):
    params = _prepared(in_tmp, tiny_params)
    run_train(params, "minimax", echo=lambda *_: None)
    out = in_tmp / "models/variants/minimax"
    # 2 epochs at progress_every 4: the last epoch's grid only
    assert (out / "generator.pt").exists() and [p.name for p in (out / "progress").iterdir()] == [
        "epoch_002.png"]
    summary = json.loads((in_tmp / "metrics/train/minimax.json").read_text())
    assert summary["g_steps"] == 2 * (300 // 32)
    header = (in_tmp / "metrics/curves/minimax.csv").read_text().splitlines()[0].split(",")
    for col in ("step", "d_loss", "g_loss", "d_real", "d_fake", "g_grad_norm", "d_gap"):
        assert col in header

    from ganlab.tracking import runs as tracking

    run_id = tracking.read_run_file(out / "mlflow_run.json")
    c, _ = tracking.client()
    run = c.get_run(run_id)
    assert run.data.params["loss"] == "minimax"
    assert run.data.tags["variant"] == "minimax"
    hist = c.get_metric_history(run_id, "g_loss")
    assert len(hist) == summary["g_steps"] // params.variants["minimax"].log_every


def test_optimisers_are_built_on_first_use_and_step_as_before():
    """A trainer built only for its nets (the quality stage) builds no optimiser, so the
    process never imports torch._dynamo (1.4-1.9 s); a step builds it, and the update is the
    eager optimiser's."""
    import subprocess
    import sys

    from ganlab.config.params import TrainParams
    from ganlab.kinds.base import DeferredOptimizer, make_optimizer

    p = TrainParams(lr=0.01)
    net, twin = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    twin.load_state_dict(net.state_dict())
    lazy = make_optimizer(p, net.parameters(), p.lr)
    assert isinstance(lazy, DeferredOptimizer) and lazy._opt is None
    eager = torch.optim.Adam(twin.parameters(), lr=p.lr, betas=p.betas)
    x = torch.randn(5, 3)
    for opt, m in ((lazy, net), (eager, twin)):
        for _ in range(3):
            opt.zero_grad()
            m(x).square().sum().backward()
            opt.step()
    assert lazy._opt is not None and lazy.state_dict()["state"]
    torch.testing.assert_close(net.weight, twin.weight, rtol=1e-6, atol=1e-7)
    code = ("import sys, torch\nfrom ganlab.kinds.base import make_optimizer\n"
            "from ganlab.config.params import TrainParams\n"
            "make_optimizer(TrainParams(), torch.nn.Linear(2, 2).parameters(), 0.1)\n"
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

