"""The 2-D mode-coverage suite (ganlab.toy_suite), its settings (ganlab.toy_params) and nets."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from ganlab.config.params import ParamsError, TrainParams, load_params
from ganlab.config.toy import ToySuiteParams, check_steps, counted_checks, lr_factor, snapshot_steps
from ganlab.core.collapse import mean_pairwise_distance
from ganlab.metrics.modes import score_modes
from ganlab.nets.build import build_gan
from ganlab.nets.toy import ToyDiscriminator, ToyGenerator
from ganlab.toy.suite import run_toy_variant, toy_variant_settings, train_variant

from .conftest import REPO

RAW = yaml.safe_load((REPO / "params.yaml").read_text())
MAIN_VARIANTS = {k: {**RAW["training"], **v} for k, v in RAW["variants"].items()}

# A few dozen steps of a small net: seconds on one core.
TINY = ToySuiteParams(seeds=(0, 1), g_steps=40, batch_size=64, latent_dim=2, width=16,
                      n_train=1280, n_eval=300, n_snapshots=2, check_every=20, n_check=64,
                      collapse_warmup=0, collapse_patience=2)


def _no_nan_json(path):
    def bad(token):
        raise AssertionError(f"{path}: {token} is not JSON")
    return json.loads(path.read_text(), parse_constant=bad)


def test_toy_nets_shapes_and_no_batch_norm() -> None:
    g, d = ToyGenerator(3, hidden=8, depth=2), ToyDiscriminator(hidden=8, depth=2)
    x = g(torch.randn(5, 3))
    assert x.shape == (5, 2) and d(x).shape == (5,)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in [*g.modules(), *d.modules()])
    assert not any(isinstance(m, torch.nn.Tanh) for m in g.modules())  # grid modes sit at +-4


def test_build_gan_toy_arch() -> None:
    g, d = build_gan(TrainParams(arch="toy", width=12, latent_dim=4), (2,))
    assert isinstance(g, ToyGenerator) and isinstance(d, ToyDiscriminator)
    assert g.net[0].in_features == 4 and g.net[0].out_features == 12


def test_toy_variant_settings_overrides_the_architecture_only() -> None:
    toy = ToySuiteParams(width=32, latent_dim=3, batch_size=128)
    s = toy_variant_settings(MAIN_VARIANTS["wgan"], toy)
    assert (s["arch"], s["width"], s["latent_dim"], s["batch_size"]) == ("toy", 32, 3, 128)
    assert s["d_norm"] == "none"
    assert (s["loss"], s["clip"], s["n_critic"], s["optimizer"]) == ("wasserstein", 0.01, 5, "rmsprop")
    assert s["lr"] == pytest.approx(MAIN_VARIANTS["wgan"]["lr"] * toy.lr_scale)
    assert toy_variant_settings(MAIN_VARIANTS["dcgan"], toy) is None


def _train_params(settings: dict) -> TrainParams:
    return TrainParams(**{k: v for k, v in settings.items() if k in TrainParams.__dataclass_fields__})


def test_d_lr_ratio_raises_only_ds_rate_for_every_variant() -> None:
    for name in ("gan", "wgan", "wgan_gp", "sngan"):
        plain = _train_params(toy_variant_settings(MAIN_VARIANTS[name], ToySuiteParams(lr_scale=4.0)))
        ttur = _train_params(toy_variant_settings(
            MAIN_VARIANTS[name], ToySuiteParams(lr_scale=4.0, d_lr_ratio=1.5)))
        base = _train_params(MAIN_VARIANTS[name])
        assert plain.lr == ttur.lr == pytest.approx(4.0 * base.lr)
        # ratio 1 keeps D at the variant's own D rate (G's when d_lr is 0), scaled alike
        assert plain.d_learning_rate == pytest.approx(4.0 * base.d_learning_rate)
        assert ttur.d_learning_rate == pytest.approx(1.5 * plain.d_learning_rate)


def test_toy_betas_replace_every_adam_variants_betas_and_nothing_else() -> None:
    cfg = ToySuiteParams(lr_scale=4.0, betas=(0.0, 0.9))
    for name in ("minimax", "gan", "lsgan", "wgan", "wgan_gp", "sngan"):
        own = _train_params(toy_variant_settings(MAIN_VARIANTS[name], ToySuiteParams(lr_scale=4.0)))
        set_ = _train_params(toy_variant_settings(MAIN_VARIANTS[name], cfg))
        assert own.betas == _train_params(MAIN_VARIANTS[name]).betas  # empty: the variant's own
        if own.optimizer == "adam":
            assert tuple(set_.betas) == (0.0, 0.9)
            assert dataclasses.replace(set_, betas=own.betas) == own
        else:  # RMSProp (wgan) has no betas: untouched
            assert set_ == own


def test_run_writes_samples_that_rescore_to_the_json(tmp_path) -> None:
    cells = run_toy_variant("gan", MAIN_VARIANTS["gan"], TINY, tmp_path)
    assert set(cells) == {"ring8", "grid25"}
    for ds in ("ring8", "grid25"):
        scores = _no_nan_json(tmp_path / ds / "scores.json")
        assert scores["summary"] == pytest.approx(cells[ds])
        assert len(scores["centers"]) == {"ring8": 8, "grid25": 25}[ds]
        values = {"modes": [], "hq": [], "kl": []}
        for row in scores["seeds"]:
            with np.load(tmp_path / ds / row["samples"]) as z:
                assert z["samples"].shape == (TINY.n_eval, 2)
                # re-scored from disk with the JSON's centres and std, by the papers' scorer
                again = score_modes(z["samples"], np.asarray(scores["centers"]), scores["std"],
                                    scores["n_sigma"])
            assert again["modes_covered"] == row["modes_covered"]
            assert again["high_quality_frac"] == row["high_quality_frac"]
            assert again["kl_uniform"] == row["kl_uniform"]
            values["modes"].append(row["modes_covered"])
            values["hq"].append(row["high_quality_frac"])
            values["kl"].append(row["kl_uniform"])
            assert row["g_steps"] == TINY.g_steps
        for short, vs in values.items():
            assert scores["summary"][f"{short}_mean"] == pytest.approx(np.mean(vs))
            assert scores["summary"][f"{short}_se"] == pytest.approx(np.std(vs, ddof=1) / math.sqrt(2))
            # the 95% t-interval: t(0.975, 1) = 12.706 times the s.e. for two seeds
            assert scores["summary"][f"{short}_ci95"] == pytest.approx(
                12.7062047 * np.std(vs, ddof=1) / math.sqrt(2), rel=1e-6, abs=1e-12)
        assert (tmp_path / ds / "progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert sorted(p.name for p in (tmp_path / ds).iterdir()) == [
            "progress.png", "scores.json", "seed0.npz", "seed1.npz"]


def test_training_is_deterministic(tmp_path) -> None:
    cfg = dataclasses.replace(TINY, seeds=(3,), datasets=("grid25",))
    settings = toy_variant_settings(MAIN_VARIANTS["lsgan"], cfg)
    a, b = train_variant("lsgan", settings, cfg), train_variant("lsgan", settings, cfg)
    assert (a[0]["samples"] == b[0]["samples"]).all()


def test_check_and_snapshot_steps() -> None:
    assert check_steps(250, 100) == [100, 200, 250]
    assert counted_checks(600, 100, 500) == [500, 600]
    assert snapshot_steps(2000, 4, 100) == [500, 1000, 1500, 2000]
    assert snapshot_steps(250, 4, 100) == [100, 200, 250]


def test_lr_schedule_is_flat_then_linear_to_the_final_fraction() -> None:
    cfg = ToySuiteParams(g_steps=1000, lr_decay_start=0.5, lr_final=0.1, check_every=100)
    assert lr_factor(cfg, 0) == lr_factor(cfg, 500) == 1.0
    assert lr_factor(cfg, 750) == pytest.approx(0.55)
    assert lr_factor(cfg, 1000) == pytest.approx(0.1)


def test_early_stop_keeps_the_most_diverse_generator(monkeypatch) -> None:
    # Script the diversity signal: best at the 2nd check (G step 20), then three low checks.
    script = iter([0.1, 0.9, 0.2, 0.1, 0.05, 0.05, 0.05])
    monkeypatch.setattr("ganlab.toy.suite.diversity_signal", lambda *a: next(script))
    cfg = dataclasses.replace(TINY, seeds=(0,), datasets=("ring8",), g_steps=200, check_every=10,
                              collapse_threshold=0.5, collapse_patience=3, early_stop_on_collapse=True,
                              lr_decay_start=1.0)
    settings = toy_variant_settings(MAIN_VARIANTS["gan"], cfg)
    (r,) = train_variant("gan", settings, cfg)
    assert r["stopped_early"] and r["g_steps"] == 50 and r["collapse_warnings"] == 1
    assert r["best_step"] == 20
    assert list(r["snapshots"]) == [20]  # the kept generator's panel, labelled with its step
    monkeypatch.undo()
    # The same run trained for exactly 20 G steps gives the very same generator...
    short = dataclasses.replace(cfg, g_steps=20, early_stop_on_collapse=False, collapse_patience=1)
    (ref,) = train_variant("gan", settings, short)
    np.testing.assert_allclose(r["samples"], ref["samples"], rtol=0, atol=1e-6)
    # ...and differs from the generator the run had reached when it stopped
    (last,) = train_variant("gan", settings, dataclasses.replace(short, g_steps=50))
    assert np.abs(r["samples"] - last["samples"]).max() > 1e-3


def test_shipped_toy_settings_let_the_detector_fire() -> None:
    cfg = load_params(REPO / "params.yaml").toy
    counted = counted_checks(cfg.g_steps, cfg.check_every, cfg.collapse_warmup)
    assert len(counted) >= cfg.collapse_patience
    # issue 10, defect 5: the settings shipped before (600 steps, warm-up 500) are refused
    old = dict(RAW["toy"], g_steps=600, collapse_warmup=500, check_every=100, collapse_patience=3)
    with pytest.raises(ParamsError, match="toy.collapse_patience"):
        ToySuiteParams.from_dict(old)


def test_toy_params_from_dict_and_checks() -> None:
    cfg = ToySuiteParams.from_dict({"datasets": ["grid25"], "seeds": [4, 5], "g_steps": 600})
    assert cfg.datasets == ("grid25",) and cfg.seeds == (4, 5) and cfg.g_steps == 600
    for raw, key in [({"stepz": 3}, "toy.stepz"), ({"datasets": ["spiral"]}, "toy.datasets"),
                     ({"g_steps": 1.5}, "toy.g_steps"), ({"seeds": [1, 1]}, "toy.seeds"),
                     ({"collapse_threshold": 1.5}, "toy.collapse_threshold"),
                     ({"lr_final": 0.0}, "toy.lr_final"), ({"d_lr_ratio": 0}, "toy.d_lr_ratio"),
                     ({"betas": [0.0]}, "toy.betas"), ({"betas": [0.0, 1.0]}, r"toy.betas\[1\]"),
                     ({"betas": [0.5, 0.99995]}, r"toy.betas\[1\]")]:
        with pytest.raises(ParamsError, match=key):
            ToySuiteParams.from_dict(raw)


def test_params_module_imports_nothing_heavy() -> None:
    # every stage imports ganlab.params; torch, the nets or the trainer there would put
    # them in every stage's import closure (issue 10, item 4)
    code = ("import sys, ganlab.config.params; heavy = [m for m in sys.modules if m == 'torch' or "
            "m.startswith(('ganlab.kinds', 'ganlab.nets', 'ganlab.toy.', 'ganlab.metrics'))]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_report_section_shows_ours_beside_the_quoted_rows(in_tmp, tiny_params) -> None:
    from ganlab.report.toy import toy_section

    cfg = dataclasses.replace(TINY, datasets=("ring8",))
    run_toy_variant("gan", MAIN_VARIANTS["gan"], cfg, in_tmp / "metrics/toy/gan")
    params = dataclasses.replace(tiny_params, toy=cfg)
    text = "\n".join(toy_section(params, in_tmp / "metrics"))
    scores = json.loads((in_tmp / "metrics/toy/gan/ring8/scores.json").read_text())["summary"]
    assert f"| **gan** (nonsaturating) | {scores['modes_mean']:.1f} ± {scores['modes_se']:.1f} |" in text
    assert "| *PacGAN4* | *7.8 ± 0.1* | *95.9 ± 1.4* | *0.07 ± 0.02* |" in text
    if scores["n_seeds"] > 1:
        assert f"gan {scores['modes_mean']:.1f} ± {scores['modes_ci95']:.1f} modes" in text
    else:  # one seed: no interval, and no interval line
        assert "modes_ci95" not in scores and "95% Student-t" not in text
    assert "quoted" in text and "GDPP" in text and "grid25" not in text.split("Quoted rows")[0]
    assert ("| *WGAN-GP (GDPP's row)* | *6.8* | *59.6* | – | – | – | *quoted: GDPP Table 1, as issue "
            "22 gives it (not checked against the paper)* |") in text
    assert f"Rates: each variant's × {cfg.lr_scale:g}, D's × {cfg.d_lr_ratio:g}" in text
    assert "each variant's own Adam β" in text  # TINY sets no toy.betas
    with_betas = toy_section(dataclasses.replace(params, toy=dataclasses.replace(cfg, betas=(0.0, 0.9))),
                             in_tmp / "metrics")
    assert "Adam β (0, 0.9) for every Adam variant" in "\n".join(with_betas)
    png = in_tmp / "metrics/report_toy/ring8.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# The shipped detector settings (threshold, patience) on a short budget with 9 counted checks
# (500 G steps: the shipped EMA of G, 0.99, lags a collapse by ~100 steps).
SHIPPED = load_params(REPO / "params.yaml").toy
SHORT = dataclasses.replace(SHIPPED, datasets=("ring8",), seeds=(0,), g_steps=500, check_every=50,
                            collapse_warmup=100, width=16, batch_size=64, n_check=256, n_eval=500)


def test_detector_fires_on_a_collapsing_run_and_keeps_the_most_diverse_generator() -> None:
    # The saturating (minimax) loss against a 10x faster discriminator: D wins, G's gradient
    # vanishes except towards one spot, and the ring collapses to a point.
    settings = toy_variant_settings({**MAIN_VARIANTS["minimax"], "d_lr": 2e-3}, SHORT)
    (r,) = train_variant("minimax", settings, SHORT)
    assert r["collapse_warnings"] == 1 and r["min_diversity"] < SHORT.collapse_threshold
    assert r["modes_covered"] <= 2
    (kept,) = train_variant("minimax", settings, dataclasses.replace(SHORT, early_stop_on_collapse=True))
    assert kept["stopped_early"] and kept["g_steps"] < SHORT.g_steps
    assert kept["best_step"] == max(kept["diversity"], key=lambda h: h[1])[0]
    # the kept generator is the diverse one, not the collapsed one the run ended with
    kept_spread = mean_pairwise_distance(torch.as_tensor(kept["samples"]))
    assert kept_spread > 5 * mean_pairwise_distance(torch.as_tensor(r["samples"]))


def test_detector_stays_quiet_on_a_healthy_run() -> None:
    (r,) = train_variant("gan", toy_variant_settings(MAIN_VARIANTS["gan"], SHORT), SHORT)
    assert r["collapse_warnings"] == 0 and not r["stopped_early"]
    assert len(r["diversity"]) == 9  # every counted check ran


def test_saved_samples_are_byte_identical_across_writes(tmp_path) -> None:
    import time as _time

    from ganlab.toy.suite import save_samples

    pts = np.arange(10, dtype=np.float32).reshape(5, 2)
    save_samples(tmp_path / "a.npz", pts, np.zeros((2, 2)), 0.05)
    _time.sleep(2.1)  # zip timestamps have 2 s resolution
    save_samples(tmp_path / "b.npz", pts, np.zeros((2, 2)), 0.05)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with np.load(tmp_path / "a.npz") as z:
        assert (z["samples"] == pts).all() and float(z["std"]) == 0.05


def test_workers_split_the_datasets_and_give_each_share_its_solo_numbers() -> None:
    from ganlab.toy.suite import train_in_workers

    cfg = dataclasses.replace(TINY, seeds=(0,), workers=2)
    settings = toy_variant_settings(MAIN_VARIANTS["gan"], cfg)
    split = train_in_workers("gan", settings, cfg)
    assert [r["member"].dataset for r in split] == list(cfg.datasets)
    for r in split:
        alone = train_variant("gan", settings, dataclasses.replace(cfg, datasets=(r["member"].dataset,)))
        assert (alone[0]["samples"] == r["samples"]).all()


def test_forked_workers_give_the_spawned_workers_numbers(tmp_path) -> None:
    # `ganlab toy` runs inside forked_workers(), so its workers are forked (no second torch
    # import); outside that block (this test's own call) they are spawned.
    from ganlab.toy import suite as toy_suite
    from ganlab.toy.suite import train_in_workers

    assert toy_suite._worker_context().get_start_method() == "spawn"
    cfg = dataclasses.replace(TINY, seeds=(0,), workers=2)
    settings = toy_variant_settings(MAIN_VARIANTS["gan"], cfg)
    spawned = train_in_workers("gan", settings, cfg)
    code = (
        "import dataclasses, sys, numpy as np, torch; torch.set_num_threads(1)\n"
        "from ganlab.toy import suite as toy_suite\n"
        "from tests.test_toy_suite import TINY, MAIN_VARIANTS\n"
        "cfg = dataclasses.replace(TINY, seeds=(0,), workers=2)\n"
        "s = toy_suite.toy_variant_settings(MAIN_VARIANTS['gan'], cfg)\n"
        "with toy_suite.forked_workers():\n"
        "    assert toy_suite._worker_context().get_start_method() == 'fork'\n"
        "    runs = toy_suite.train_in_workers('gan', s, cfg)\n"
        "assert toy_suite._worker_context().get_start_method() == 'spawn'\n"
        f"np.save({str(tmp_path / 'forked.npy')!r}, np.stack([r['samples'] for r in runs]))\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=300)
    forked = np.load(tmp_path / "forked.npy")
    assert (forked == np.stack([r["samples"] for r in spawned])).all()
