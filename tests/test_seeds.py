"""Training seeds (`seeds:`): one model per seed, the first seed's outputs unchanged by adding
others, metrics as mean ± 95% t-interval, and the report's Welch tests against gan."""

from __future__ import annotations

import json

import pytest
import torch

from ganlab.config.params import ParamsError, parse_params


@pytest.fixture
def seeded(in_tmp, tiny_raw):
    from ganlab.stages.floor import run_floor
    from ganlab.stages.judge import run_judge
    from ganlab.stages.prepare import run_prepare

    tiny_raw["variants"] = {"gan": {"loss": "nonsaturating"}}
    tiny_raw["monitor"]["every"] = 0
    tiny_raw["seeds"] = [0, 3]
    params = parse_params(tiny_raw)
    run_prepare(params)
    run_judge(params)
    run_floor(params)
    return in_tmp, tiny_raw, params


def _state(path):
    return torch.load(path, weights_only=False)["state_dict"]


def test_every_seed_trains_samples_and_is_scored_and_the_first_is_unchanged(seeded):
    from ganlab.cli import sample, train
    from ganlab.core.stats import mean_ci
    from ganlab.stages.evaluate import run_evaluate
    from ganlab.stages.train import run_train
    from ganlab.tracking import runs as tracking
    from tests.conftest import write_params

    root, raw, params = seeded
    write_params(root / "params.yaml", raw)
    train("gan", root / "params.yaml")
    sample("gan", root / "params.yaml")
    m = run_evaluate(params, "gan", echo=lambda *_: None)
    first, replica = root / "models/variants/gan", root / "models/variants/gan/seeds/3"
    assert (replica / "generator.pt").exists() and (replica / "curves.csv").exists()
    assert (root / "samples/gan/seeds/3/samples.npz").exists()
    g0, g3 = _state(first / "generator.pt"), _state(replica / "generator.pt")
    assert any(not torch.equal(g0[k], g3[k]) for k in g0)  # the seed changes the training
    # per-seed values, their mean and the t-interval, as written
    assert m == json.loads((root / "metrics/eval/gan.json").read_text())
    assert m["n_seeds"] == 2 and set(m["seeds"]) == {"0", "3"}
    ci = mean_ci([m["seeds"][s]["fid_judge"] for s in ("0", "3")])
    assert m["fid_judge"] == pytest.approx(ci["mean"], abs=1e-6)
    assert m["fid_judge_ci95"] == pytest.approx(ci["half_width"], abs=1e-6)
    assert "judge_test_accuracy_ci95" not in m  # a shared reference has no interval
    # MLflow: one run per seed, the replica named apart; only the first seed is registered
    c, exp = tracking.client()
    runs = c.search_runs([exp])
    assert sorted(r.data.tags["seed"] for r in runs) == ["0", "3"]
    assert {r.info.run_name for r in runs} == {"gan", "gan-seed3"}
    # each seed's run holds its own numbers under eval/*; the aggregate is under its own keys
    by_seed = {r.data.tags["seed"]: r.data.metrics for r in runs}
    for s in ("0", "3"):
        assert by_seed[s]["eval/fid_judge"] == pytest.approx(m["seeds"][s]["fid_judge"], abs=1e-6)
    assert by_seed["0"]["eval_mean/fid_judge"] == pytest.approx(m["fid_judge"], abs=1e-6)
    assert by_seed["0"]["eval_ci95/fid_judge"] == pytest.approx(m["fid_judge_ci95"], abs=1e-6)
    assert not any(k.startswith("eval_mean/") for k in by_seed["3"])
    assert not any(k.startswith("n_") and k.endswith("_ci95") for k in m)  # counts: no interval
    assert len(c.search_model_versions("name = 'ganlab-gan'")) == 1
    # a missing replica generator stops `ganlab sample` before it rewrites any seed's samples
    import typer

    first_samples = (root / "samples/gan/samples.npz").read_bytes()
    (replica / "generator.pt").unlink()
    (root / "samples/gan/samples.npz").write_bytes(b"marker")
    with pytest.raises(typer.Exit):
        sample("gan", root / "params.yaml")
    assert (root / "samples/gan/samples.npz").read_bytes() == b"marker"
    (root / "samples/gan/samples.npz").write_bytes(first_samples)
    # the first seed's model is the one a one-seed run trains: adding seeds changes nothing
    one = parse_params({**raw, "seeds": [0]})
    run_train(one, "gan", echo=lambda *_: None)
    assert all(torch.equal(g0[k], v) for k, v in _state(first / "generator.pt").items())


def test_a_seed_outside_seeds_and_bad_lists_are_refused(tiny_raw):
    params = parse_params({**tiny_raw, "seeds": [0, 1]})
    with pytest.raises(ParamsError, match="seed 5 is not in seeds"):
        params.training_seed(5)
    for bad in ([0, 0], [-1], [], "0"):
        with pytest.raises(ParamsError, match="seeds"):
            parse_params({**tiny_raw, "seeds": bad})


def _ev(per_seed: dict[str, float]) -> dict:
    return {"fid_judge": sum(per_seed.values()) / len(per_seed),
            "seeds": {s: {"fid_judge": v, "precision_judge": 0.5, "recall_judge": 0.1,
                          "classes_covered": 9} for s, v in per_seed.items()}}


def test_report_marks_only_differences_beyond_seed_noise(tiny_raw):
    from ganlab.stages.report import _seeds_section

    params = parse_params({**tiny_raw, "seeds": [0, 1, 2],
                           "variants": {"gan": {}, "far": {}, "near": {}}})
    rows = [("gan", None, _ev({"0": 100.0, "1": 101.0, "2": 99.0}), None),
            ("far", None, _ev({"0": 50.0, "1": 51.0, "2": 49.0}), None),
            ("near", None, _ev({"0": 90.0, "1": 115.0, "2": 95.0}), None)]
    text = "\n".join(_seeds_section(params, rows))
    far = next(line for line in text.splitlines() if line.startswith("| **far**"))
    near = next(line for line in text.splitlines() if line.startswith("| **near**"))
    assert "**differs**" in far and "-50.00" in far and "50.00 ± 2.48" in far
    assert "| no |" in near
    assert "Welch" in text
    one = parse_params({**tiny_raw, "seeds": [0]})
    assert "One training seed" in "\n".join(_seeds_section(one, rows))


def test_every_seed_shares_the_progress_noise_and_the_monitors_draws(seeded, monkeypatch):
    """Issue 21.6: the training seed draws the training (init, batches, noise); the progress
    grids' noise and the monitor's fixed draws stay the data seed's, shared by every seed."""
    import ganlab.stages.train as tr
    from ganlab.runtime import monitor

    _, raw, params = seeded
    seen: dict[str, list[int]] = {"grid": [], "monitor": []}
    grid_noise, monitor_latent = tr.grid_noise, monitor.monitor_latent

    def grid_spy(p, *a, **kw):
        seen["grid"].append(p.seed)
        return grid_noise(p, *a, **kw)

    def latent_spy(trainer, n, seed, variant):
        seen["monitor"].append(seed)
        return monitor_latent(trainer, n, seed, variant)

    monkeypatch.setattr(tr, "grid_noise", grid_spy)
    monkeypatch.setattr(monitor, "monitor_latent", latent_spy)
    on = parse_params({**raw, "monitor": {**raw["monitor"], "every": 1, "early_stop_on_collapse": True}})
    for seed in (0, 3):
        tr.run_train(on, "gan", echo=lambda *_: None, seed=seed)
    assert seen["grid"] == [0, 0] and seen["monitor"] == [0, 0]
