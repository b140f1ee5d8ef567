"""The 2-D mode-coverage suite (ganlab.toy_suite) and its nets (ganlab.nets.toy)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import yaml

from ganlab.nets import build_gan
from ganlab.nets.toy import ToyDiscriminator, ToyGenerator
from ganlab.params import ParamsError, TrainParams, parse_params
from ganlab.toy_suite import (
    ToySuiteParams,
    run_suite,
    run_toy,
    snapshot_steps,
    toy_variant_settings,
    train_one,
)
from ganlab.train import GanTrainer, TrainState

from .conftest import REPO

RAW = yaml.safe_load((REPO / "params.yaml").read_text())
MAIN_VARIANTS = {k: {**RAW["training"], **v} for k, v in RAW["variants"].items()}
TOY_VARIANTS = [k for k, v in MAIN_VARIANTS.items() if v.get("arch") != "dcgan"]

# A few dozen steps of a small net: seconds for the whole file on one core.
TINY = ToySuiteParams(seeds=(0, 1), steps=40, batch_size=64, latent_dim=2, width=16,
                      n_train=1280, n_eval=300, n_snapshots=2, check_every=20, n_check=64,
                      collapse_warmup=0)


def test_toy_nets_shapes_and_no_batch_norm() -> None:
    g, d = ToyGenerator(3, hidden=8, depth=2), ToyDiscriminator(hidden=8, depth=2)
    x = g(torch.randn(5, 3))
    assert x.shape == (5, 2) and d(x).shape == (5,)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in [*g.modules(), *d.modules()])
    # linear output: G can reach the grid's outer modes at +-4, beyond a tanh's range
    assert not any(isinstance(m, torch.nn.Tanh) for m in g.modules())


def test_build_gan_toy_arch() -> None:
    p = TrainParams(arch="toy", width=12, latent_dim=4)
    g, d = build_gan(p, (2,))
    assert isinstance(g, ToyGenerator) and isinstance(d, ToyDiscriminator)
    assert g.net[0].in_features == 4 and g.net[0].out_features == 12


def test_toy_variant_settings_overrides_the_architecture_and_budget() -> None:
    toy = ToySuiteParams(width=32, latent_dim=3, batch_size=128, steps=1000, check_every=100)
    s = toy_variant_settings(MAIN_VARIANTS["wgan"], toy)
    assert s["arch"] == "toy" and s["width"] == 32 and s["latent_dim"] == 3
    assert s["batch_size"] == 128 and s["epochs"] == 10 and s["d_norm"] == "none"
    # the method is the variant's
    assert (s["loss"], s["clip"], s["n_critic"], s["optimizer"]) == ("wasserstein", 0.01, 5, "rmsprop")
    assert MAIN_VARIANTS["wgan"].get("arch", "mlp") == "mlp"  # input left untouched
    assert toy_variant_settings(MAIN_VARIANTS["dcgan"], toy) is None
    assert s["lr"] == pytest.approx(5e-5 * toy.lr_scale)
    scaled = toy_variant_settings({"loss": "hinge"}, dataclasses.replace(toy, lr_scale=5.0))
    assert scaled["lr"] == pytest.approx(1e-3)  # the TrainParams default lr, scaled


@pytest.mark.parametrize("name", TOY_VARIANTS)
def test_every_loss_trains_on_ring8_without_nan(name: str) -> None:
    settings = toy_variant_settings(MAIN_VARIANTS[name], TINY)
    params = parse_params({"device": "cpu", "variants": {name: settings}})
    real = torch.randn(TINY.n_train, 2)
    trainer = GanTrainer(params, name, real, torch.device("cpu"))
    trainer.steps_per_epoch = 10  # every n_critic (1 or 5) gets G steps in 10 D steps
    state = TrainState()
    trainer.run_epoch(state)
    assert state.d_step == 10 and state.g_step == 10 // params.variant(name).n_critic
    for net in (trainer.g, trainer.d):
        assert all(torch.isfinite(q).all() for q in net.parameters())
    with torch.no_grad():
        assert torch.isfinite(trainer.g(torch.randn(32, TINY.latent_dim))).all()


def test_run_toy_writes_mean_and_se_over_seeds(tmp_path) -> None:
    m = run_toy("ring8", "gan", MAIN_VARIANTS["gan"], [0, 1], TINY, tmp_path)
    written = json.loads((tmp_path / "ring8" / "gan.json").read_text())
    assert written == pytest.approx(m)
    assert all(isinstance(v, int | float) and math.isfinite(v) for v in written.values())
    assert written["n_seeds"] == 2 and written["n_modes"] == 8
    for short in ("modes", "hq", "kl"):
        a, b = written[f"seed0_{short}"], written[f"seed1_{short}"]
        assert written[f"{short}_mean"] == pytest.approx((a + b) / 2)
        assert written[f"{short}_se"] == pytest.approx(abs(a - b) / 2)  # std(ddof=1)/sqrt(2)
    assert written["seed0_d_steps"] == TINY.steps
    png = (tmp_path / "ring8" / "gan.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "ring8").iterdir()) == ["gan.json", "gan.png"]


def test_run_toy_is_deterministic_per_seed(tmp_path) -> None:
    cfg = dataclasses.replace(TINY, seeds=(3,))
    a = train_one("grid25", "lsgan", toy_variant_settings(MAIN_VARIANTS["lsgan"], cfg), 3, cfg)
    b = train_one("grid25", "lsgan", toy_variant_settings(MAIN_VARIANTS["lsgan"], cfg), 3, cfg)
    assert (a["samples"] == b["samples"]).all()


def test_run_suite_skips_dcgan(tmp_path) -> None:
    cfg = dataclasses.replace(TINY, datasets=("ring8",), seeds=(0,), steps=20)
    out = run_suite(cfg, {"gan": RAW["variants"]["gan"], "dcgan": RAW["variants"]["dcgan"]},
                    tmp_path, training=RAW["training"])
    assert list(out["ring8"]) == ["gan"]
    assert not (tmp_path / "ring8" / "dcgan.json").exists()


def test_workers_give_the_same_results(tmp_path) -> None:
    cfg = dataclasses.replace(TINY, datasets=("ring8",), seeds=(0,), steps=20)
    variants = {k: RAW["variants"][k] for k in ("gan", "wgan")}
    one = run_suite(cfg, variants, tmp_path / "a", training=RAW["training"])
    two = run_suite(dataclasses.replace(cfg, workers=2), variants, tmp_path / "b", training=RAW["training"])
    assert one == two


def test_snapshot_steps_land_on_checks() -> None:
    assert snapshot_steps(2000, 4, 100) == [500, 1000, 1500, 2000]
    assert snapshot_steps(250, 4, 100) == [100, 200, 250]


def test_early_stop_keeps_the_most_diverse_generator(monkeypatch) -> None:
    # Script the diversity signal: best at the 2nd check (step 20), then three low checks.
    script = iter([0.1, 0.9, 0.2, 0.1, 0.05, 0.05, 0.05])
    monkeypatch.setattr("ganlab.toy_suite.diversity_signal", lambda *a: next(script))
    cfg = dataclasses.replace(TINY, steps=200, check_every=10, n_train=640, collapse_threshold=0.5,
                              collapse_patience=3, early_stop_on_collapse=True)
    settings = toy_variant_settings(MAIN_VARIANTS["gan"], cfg)
    r = train_one("ring8", "gan", settings, 0, cfg)
    assert r["stopped_early"] and r["d_steps"] == 50 and r["collapse_warnings"] == 1
    assert r["best_step"] == 20
    assert list(r["snapshots"]) == [20]  # the kept generator's panel, labelled with its step
    # The same run trained for exactly 20 steps gives the very same generator.
    monkeypatch.undo()
    short = dataclasses.replace(cfg, steps=20, early_stop_on_collapse=False)
    ref = train_one("ring8", "gan", settings, 0, short)
    assert (r["samples"] == ref["samples"]).all()
    # ...and differs from the generator the run had reached when it stopped
    last = train_one("ring8", "gan", settings, 0, dataclasses.replace(short, steps=50))
    assert not (r["samples"] == last["samples"]).all()


def test_without_early_stop_collapse_is_only_counted(monkeypatch) -> None:
    monkeypatch.setattr("ganlab.toy_suite.diversity_signal", lambda *a: 0.01)
    cfg = dataclasses.replace(TINY, steps=60, check_every=10, n_train=640, collapse_patience=2)
    r = train_one("ring8", "gan", toy_variant_settings(MAIN_VARIANTS["gan"], cfg), 0, cfg)
    assert not r["stopped_early"] and r["d_steps"] == 60
    assert r["collapse_warnings"] == 1 and r["min_diversity"] == pytest.approx(0.01)


def test_toy_params_from_dict_and_checks() -> None:
    cfg = ToySuiteParams.from_dict({"datasets": ["grid25"], "seeds": [4, 5], "steps": 300})
    assert cfg.datasets == ("grid25",) and cfg.seeds == (4, 5) and cfg.steps == 300
    with pytest.raises(ParamsError, match="toy.stepz"):
        ToySuiteParams.from_dict({"stepz": 3})
    with pytest.raises(ParamsError, match="toy.datasets"):
        ToySuiteParams.from_dict({"datasets": ["spiral"]})
    with pytest.raises(ParamsError, match="toy.n_train"):
        ToySuiteParams.from_dict({"n_train": 100})
    with pytest.raises(ParamsError, match="toy.steps"):
        ToySuiteParams.from_dict({"steps": 1.5})
