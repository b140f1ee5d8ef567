"""A variant's own toy settings (`toy.variants.<V>`, issue 22 item 1): decoupled from its image
rates, validated against the variant, and what the toy suite trains with."""

import pytest

from ganlab.config.params import ParamsError, parse_params
from ganlab.toy.suite import toy_variant_settings


def _params(tiny_raw, own):
    tiny_raw["variants"] = {"wgan_gp": {"loss": "wasserstein", "gp": 10.0, "n_critic": 5,
                                        "lr": 5e-4, "betas": [0.5, 0.9]},
                            "gan": {"loss": "nonsaturating"}}
    tiny_raw["toy"]["variants"] = own
    return parse_params(tiny_raw)


def test_own_toy_rates_are_not_scaled_and_the_rest_replaces_the_variants(tiny_raw):
    # the WGAN-GP paper's toy: lambda 0.1, Adam 1e-4 (0.5, 0.9), n_critic 5
    own = {"wgan_gp": {"lr": 1e-4, "gp": 0.1, "betas": [0.5, 0.9], "n_critic": 5}}
    params = _params(tiny_raw, own)
    assert params.toy.variants == {"wgan_gp": {"lr": 1e-4, "gp": 0.1, "betas": [0.5, 0.9],
                                               "n_critic": 5}}
    cfg = params.toy
    s = toy_variant_settings(params.variants["wgan_gp"].__dict__, cfg, "wgan_gp")
    assert s["lr"] == s["d_lr"] == 1e-4  # neither lr_scale nor d_lr_ratio
    assert s["gp"] == 0.1 and s["n_critic"] == 5 and list(s["betas"]) == [0.5, 0.9]
    # a variant without its own settings keeps the shared rule: its lr x lr_scale, toy.betas
    g = toy_variant_settings(params.variants["gan"].__dict__, cfg, "gan")
    assert g["lr"] == pytest.approx(2e-4 * cfg.lr_scale)
    assert g["d_lr"] == pytest.approx(2e-4 * cfg.lr_scale * cfg.d_lr_ratio)
    assert list(g["betas"]) == list(cfg.betas)
    # without the name, as before
    assert toy_variant_settings(params.variants["wgan_gp"].__dict__, cfg)["gp"] == 10.0


def test_own_d_lr_alone(tiny_raw):
    params = _params(tiny_raw, {"gan": {"d_lr": 3e-3}})
    s = toy_variant_settings(params.variants["gan"].__dict__, params.toy, "gan")
    assert s["d_lr"] == 3e-3 and s["lr"] == pytest.approx(2e-4 * params.toy.lr_scale)


@pytest.mark.parametrize("own, fragment", [
    ({"gan": {"width": 8}}, r"toy\.variants\.gan\.width"),
    ({"gan": {"lr": -1.0}}, r"toy\.variants\.gan\.lr"),
    ({"gan": {"n_critic": 0}}, r"toy\.variants\.gan\.n_critic"),
    ({"gan": {}}, r"toy\.variants\.gan"),
    ({"wgan_gp": {"gp": 0.0}}, r"toy\.variants\.wgan_gp\.loss"),  # a critic needs a constraint
])
def test_own_toy_settings_are_checked_with_the_key(tiny_raw, own, fragment):
    with pytest.raises(ParamsError, match=fragment):
        _params(tiny_raw, own)


def test_an_entry_for_an_absent_variant_is_unused(tiny_raw):
    assert _params(tiny_raw, {"nope": {"lr": 1e-4}, "gan": {"r1": 1.0}}).toy.variants == {
        "gan": {"r1": 1.0}}


def test_the_toy_stage_records_the_n_critic_it_trained_with(in_tmp, tiny_raw):
    """wgan_gp's image n_critic is 5, its own toy setting 1: the stage's metrics file and the
    report's D steps column give the toy's (issue 22: every row's budget as it ran)."""
    from ganlab.report.toy import toy_section
    from ganlab.stages.toy import run_toy

    tiny_raw["toy"].update({"datasets": ["ring8"], "seeds": [0], "g_steps": 40, "workers": 1,
                            "check_every": 10, "collapse_warmup": 20, "n_eval": 200})
    params = _params(tiny_raw, {"wgan_gp": {"lr": 1e-3, "d_lr": 4e-3, "gp": 0.1, "n_critic": 1}})
    summary = run_toy(params, "wgan_gp", echo=lambda *a: None)
    assert summary["n_critic"] == 1 and summary["g_steps"] == 40
    text = "\n".join(toy_section(params, in_tmp / "metrics"))
    row = next(line for line in text.splitlines() if line.startswith("| **wgan_gp**"))
    assert "| 40 | ours" in row  # 40 G steps x n_critic 1, not x 5
    assert "**wgan_gp**: lr 0.001, d_lr 0.004, gp 0.1, n_critic 1" in text
