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
