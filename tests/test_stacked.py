"""Stacked MNIST (issue 22): the scorer on hand-made triples and on real stacks, PacGAN's
packing, the settings, and a tiny run end to end."""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ganlab.config.params import ParamsError, parse_params
from ganlab.metrics.stacked import (
    N_MODES,
    expected_floor_kl,
    kl_from_uniform,
    mode_ids,
    score_triples,
)


def _all_triples() -> np.ndarray:
    g = np.arange(10)
    return np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)


def test_every_mode_once_is_kl_zero_and_full_coverage():
    triples = _all_triples()
    assert sorted(mode_ids(triples)) == list(range(N_MODES))
    s = score_triples(np.concatenate([triples, triples]))  # two of each: still flat
    assert s["modes_covered"] == 1000 and s["n"] == 2000
    assert s["kl_uniform"] == pytest.approx(0.0, abs=1e-12)


def test_one_mode_is_kl_log_1000():
    s = score_triples(np.tile([[3, 1, 4]], (26000, 1)))
    assert s["modes_covered"] == 1
    assert s["kl_uniform"] == pytest.approx(math.log(1000))
    # half the mass on each of two modes: log 500
    assert kl_from_uniform(np.bincount([0, 7], minlength=1000)) == pytest.approx(math.log(500))


def test_mode_ids_read_the_channels_as_digits_and_reject_bad_labels():
    assert mode_ids(np.array([[1, 2, 3], [9, 0, 0]])).tolist() == [123, 900]
    with pytest.raises(ValueError):
        mode_ids(np.array([[1, 2, 10]]))
    with pytest.raises(ValueError):
        mode_ids(np.array([1, 2, 3]))


def test_real_stacks_score_near_the_floor():
    from ganlab.stacked.data import draw_stacks

    # 400 "digits" per class (as the prepared split): stacks drawn the stage's way
    labels = np.repeat(np.arange(10), 400)
    digits = torch.from_numpy(labels).float().view(-1, 1, 1, 1).expand(-1, 1, 28, 28)
    stacks, idx = draw_stacks(digits, 26000, torch.Generator().manual_seed(0))
    assert stacks.shape == (26000, 3, 28, 28)
    assert torch.equal(stacks[:, :, 0, 0], torch.from_numpy(labels[idx.numpy()]).float())
    s = score_triples(labels[idx.numpy()])
    assert expected_floor_kl(26000) == pytest.approx(999 / 52000)
    assert s["modes_covered"] == 1000
    # a perfect sampler's KL is ~0.0192 with a spread of ~0.001 at N = 26,000
    assert s["kl_uniform"] == pytest.approx(0.0192, abs=0.004)


def _stacked_raw(tiny_raw, **variants):
    tiny_raw["stacked"] = {"seeds": [0], "n_samples": 60, "n_floor": 90, "g_steps": 3,
                           "score_batch": 40,
                           "training": {"arch": "dcgan", "width": 8, "batch_size": 4, "log_every": 1},
                           "variants": variants}
    return tiny_raw


def test_packing_gives_d_m_sample_inputs_and_one_output_per_pack(tiny_raw):
    from ganlab.kinds.base import TrainState
    from ganlab.stacked.train import StackedTrainer, pack_samples, stacked_params

    params = parse_params(_stacked_raw(tiny_raw, p3={"pack": 3, "d_ratio": 0.5}))
    run_params, sv = stacked_params(params, "p3", 0)
    digits = torch.rand(50, 1, 28, 28) * 2 - 1
    t = StackedTrainer(run_params, "p3", sv, digits, torch.device("cpu"))
    assert sv.d_width == 4 and t.d.body[0].in_channels == 9  # 3 samples x 3 channels
    t.begin_epoch(0)
    real = t.real_batch(0)
    fake = t.g(t.latent(4))
    assert real.shape == fake.shape == (4, 9, 28, 28)  # batch_size packs of m = 3 stacks
    # a fake pack is m independent samples of the one-sample G, in channel order
    z = t.latent(2)
    t.g.eval()
    with torch.no_grad():
        packed = t.g(z)
        singles = t.g.inner(z.view(6, t.p.latent_dim))
    assert torch.allclose(packed, pack_samples(singles, 3))
    assert torch.allclose(packed[1, 3:6], singles[4])  # pack 1, sample 1: the 5th latent
    t.g.train()
    # the D step's loss is per pack: D's output has one logit per pack
    seen = []
    t.d.register_forward_hook(lambda m, i, o: seen.append((tuple(i[0].shape), tuple(o.shape))))
    t.steps_per_epoch = 1
    t.run_epoch(TrainState())
    assert ((4, 9, 28, 28), (4,)) in seen
    assert all(s[0][1] == 9 for s in seen)


def test_stacked_settings_are_validated_with_the_key(tiny_raw):
    for spec, frag in (({"pack": 0}, r"stacked\.variants\.v\.pack"),
                       ({"pack": 9}, r"stacked\.variants\.v\.pack"),
                       ({"d_ratio": 0}, r"stacked\.variants\.v\.d_ratio"),
                       ({"g_steps": 0}, r"stacked\.variants\.v\.g_steps"),
                       ({"g_steps": 2.5}, r"stacked\.variants\.v\.g_steps"),
                       ({"g_steps": True}, r"stacked\.variants\.v\.g_steps"),
                       ({"arch": "mlp"}, r"stacked\.variants\.v"),
                       ({"loss": "hinje"}, r"stacked\.variants\.v\.loss"),
                       ({"r2": 1.0, "d_norm": "batch"}, r"stacked\.variants\.v\.d_norm")):
        with pytest.raises(ParamsError, match=frag):
            parse_params(_stacked_raw(tiny_raw, v=spec))
    raw = _stacked_raw(tiny_raw, v={})
    raw["stacked"]["n_samples"] = 0
    with pytest.raises(ParamsError, match=r"stacked\.n_samples"):
        parse_params(raw)
    # the default run does not need the section
    del raw["stacked"]
    assert parse_params(raw).stacked.variants == {}


def test_the_shipped_stacked_section_has_the_papers_variants():
    from tests.conftest import tiny_params_dict

    v = parse_params(tiny_params_dict()).stacked.variants
    assert {sv.pack for sv in v.values()} >= {1, 2, 3, 4}
    assert {sv.d_ratio for sv in v.values()} >= {0.25, 0.5}
    assert {(sv.train.loss, sv.train.r1 > 0, sv.train.r2 > 0) for sv in v.values()} >= {
        ("nonsaturating", True, True), ("relativistic", True, True)}


def test_a_tiny_stacked_run_end_to_end(in_tmp, tiny_raw):
    from ganlab.stages.judge import run_judge
    from ganlab.stages.prepare import run_prepare
    from ganlab.stages.stacked import run_stacked
    from ganlab.stages.stacked_floor import run_stacked_floor

    # rp has its own G steps (2), dc trains stacked.g_steps (3)
    raw = _stacked_raw(tiny_raw, dc={}, rp={"loss": "relativistic", "r1": 0.3, "r2": 0.3, "pack": 2,
                                            "g_steps": 2})
    raw["stacked"].update(seeds=[0, 1], workers=1)
    params = parse_params(raw)
    run_prepare(params)
    run_judge(params)
    floor = run_stacked_floor(params, echo=lambda *_: None)
    assert floor["n"] == 90 and 0 < floor["modes_covered"] <= 90
    assert json.loads((in_tmp / "metrics/stacked/floor.json").read_text())["n"] == 90
    spawned = dataclasses.replace(params, stacked=dataclasses.replace(params.stacked, workers=2))
    for v, p in (("dc", params), ("rp", spawned)):  # in this process; in 2 worker processes
        s = run_stacked(p, v, echo=lambda *_: None)
        assert s["n_seeds"] == 2 and [x["seed"] for x in s["seeds"]] == [0, 1]
        assert 1 <= s["modes_mean"] <= 60 and s["kl_mean"] >= 0
        timing = json.loads((in_tmp / f"metrics/stacked/{v}/timing.json").read_text())
        assert timing["workers"] == (2 if v == "rp" else 1) and "seed1" in timing
        z = np.load(in_tmp / f"metrics/stacked/{v}/seed0.npz")
        assert z["labels"].shape == (60, 3) and z["labels"].max() <= 9
        assert z["stacks"].shape == (40, 3, 28, 28) and z["stacks"].dtype == np.uint8
        assert score_triples(z["labels"])["modes_covered"] == s["seeds"][0]["modes_covered"]
        csv = (in_tmp / f"metrics/stacked/{v}/seed0.csv").read_text().splitlines()
        assert csv[0].startswith("step,") and s["g_steps"] == len(csv) - 1 == (2 if v == "rp" else 3)
    with pytest.raises(Exception, match="not in params.yaml stacked.variants"):
        run_stacked(params, "nope", echo=lambda *_: None)
    # the opt-in group's report: both variants' rows from their files, the floor, quoted rows
    from ganlab.stages.stacked_report import run_stacked_report

    text = run_stacked_report(params, echo=lambda *_: None).read_text()
    for v in ("dc", "rp"):
        m = json.loads((in_tmp / f"metrics/stacked/{v}.json").read_text())
        se = m["modes_sd"] / math.sqrt(2)
        assert f"| **{v}** | {m['pack']} |" in text and f"{m['modes_mean']:.1f} ± {se:.1f}" in text
    assert "| G 8 / D 2, Adam 0.0002 (0.5, 0.999), 2 G steps |" in text  # rp's own budget
    assert "| G 8 / D 2, Adam 0.0002 (0.5, 0.999), 3 G steps |" in text
    assert f"Floor: {floor['modes_covered']}/1000 modes" in text and "quoted: PacGAN Table 3" in text


def test_stacked_report_rows_beside_the_quoted_tables():
    from ganlab.report.stacked import stacked_section

    def row(pack, ratio, loss, modes, kl, r1=0.0, r2=0.0, n=3):
        return {"pack": pack, "d_ratio": ratio, "loss": loss, "r1": r1, "r2": r2, "n_seeds": n,
                "modes_mean": float(np.mean(modes)), "modes_sd": float(np.std(modes, ddof=1)),
                "kl_mean": float(np.mean(kl)), "kl_sd": float(np.std(kl, ddof=1))}

    rows = {"dcgan": row(1, 0.25, "nonsaturating", [10, 20, 30], [5.0, 5.2, 5.4]),
            "rpgan_r1r2": row(1, 0.5, "relativistic", [999, 1000, 1000], [0.05, 0.06, 0.07],
                              r1=0.3, r2=0.3)}
    text = "\n".join(stacked_section(rows, None, 4000))
    quarter = text.split("### D at 0.25 of G's size")[1].split("###")[0]
    half = text.split("### D at 0.5 of G's size")[1].split("###")[0]
    # mean ± standard error (sd / sqrt(3)), the quoted tables' form
    assert "| **dcgan** | 1 | nonsaturating | – | 20.0 ± 5.8 | 5.200 ± 0.115 | ours, 3 seed(s) |" in quarter
    assert "| **rpgan_r1r2** | 1 | relativistic + R1 0.3 + R2 0.3 | – | 999.7 ± 0.3 |" in half
    # PacGAN's rows under the matching D size, marked as quoted
    assert ("| *PacDCGAN4* | – | – | – | *667.4 ± 29.0* | *1.81 ± 0.15* | *quoted: PacGAN Table 3* |"
            in quarter)
    assert "*866.6 ± 12.1*" in half and "*866.6" not in quarter
    assert "*1000.0 ± 0.0* | *0.06 ± 0.00* | *quoted: PacGAN Table 2* |" in text
    assert "4,000 prepared training digits" in text and "Floor:" not in text
    assert "### D as large as G (PacGAN Table 2: its full-size DCGAN; no row of ours" in text
    # a row with D as large as G sits beside Table 2, and the section no longer says none does
    rows["gan_r1r2"] = row(1, 1.0, "nonsaturating", [1000, 1000, 998], [0.1, 0.12, 0.14],
                           r1=0.3, r2=0.3)
    text = "\n".join(stacked_section(rows, None, 4000))
    full = text.split("### D as large as G (PacGAN Table 2: its full-size DCGAN)")[1]
    assert "| **gan_r1r2** | 1 | nonsaturating + R1 0.3 + R2 0.3 | – | 999.3 ± 0.7 |" in full
    assert "*quoted: PacGAN Table 2* |" in full and "no row of ours" not in text
    # R3GAN's ablation beside the pair, marked as quoted and as unchecked
    assert "| *GAN + R1 + R2 (R3GAN's ablation)* | – | – | – | *693.0* | *0.927* | *quoted: R3GAN" in full
    assert "*0.078*" in full and "not checked against the paper" in full


def test_stacked_report_names_a_missing_run(in_tmp, tiny_raw):
    from ganlab.stages.stacked_report import REPORT_PATH, run_stacked_report
    from ganlab.util import GanlabError

    params = parse_params(_stacked_raw(tiny_raw, dc={}, rp={"loss": "relativistic"}))
    with pytest.raises(GanlabError, match=r"metrics/stacked/dc\.json: not found \(run `ganlab stacked dc`"):
        run_stacked_report(params, echo=lambda *_: None)
    assert not (in_tmp / REPORT_PATH).exists()


def test_a_stacked_run_reads_only_the_stacked_section(tiny_raw):
    from ganlab.stacked.train import stacked_params

    base = parse_params(_stacked_raw(tiny_raw, v={"pack": 2}))
    tiny_raw["training"]["lr"] = 0.5
    tiny_raw["budget_scale"] = 3.0
    tiny_raw["variants"] = {"other": {"loss": "hinge"}}
    changed = parse_params(tiny_raw)
    a, sv_a = stacked_params(base, "v", 7)
    b, sv_b = stacked_params(changed, "v", 7)
    assert a == b and sv_a == sv_b and a.seed == 7 and list(a.variants) == ["v"]
    assert a.variants["v"].lr == 0.0002  # the schema's default, not training.lr


def test_bench_stacked_times_steps_scoring_and_the_seed_schedule(in_tmp, tiny_raw):
    """bench/run.py --only stacked on a tiny project: every measurement positive, and the
    seed schedules give the same numbers (one thread per seed either way)."""
    import os
    import sys

    from ganlab.stages.judge import run_judge
    from ganlab.stages.prepare import run_prepare

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from stacked_cost import bench_stacked

    raw = _stacked_raw(tiny_raw, dc={}, rpgan_r1r2={"loss": "relativistic", "r1": 0.3, "r2": 0.3,
                                                     "width": 16, "g_steps": 5})
    raw["stacked"]["seeds"] = [0, 1, 2]
    params = parse_params(raw)
    run_prepare(params)
    run_judge(params)
    res = bench_stacked(quick=True, root=in_tmp, params=params, log=lambda *_: None)
    cores = len(os.sched_getaffinity(0))
    rows = {r["variant"]: r for r in res["variants"]}
    assert set(rows) == {"dc", "rpgan_r1r2"}
    assert rows["rpgan_r1r2"]["g_steps"] == 5 and rows["dc"]["g_steps"] == 3
    for r in rows.values():
        for k in ("ms_step_1t", f"ms_step_{cores}t", "one_run_s_1t", f"one_run_s_{cores}t"):
            assert r[k] > 0 and math.isfinite(r[k]), (r["variant"], k)
    assert set(res["score"]) == {8, 16} and all(v["s_26k_1t"] > 0 for v in res["score"].values())
    sched = res["schedule"]
    assert sched["variant"] == "rpgan_r1r2" and set(sched["by_workers"]) == {min(cores, 3), 3}
    if cores < 3:
        assert sched["same_numbers"] is True and sched["wall_ratio"] > 0
    assert res["comparison_lower_bound_min"] > 0
