import pytest

from ganlab.config.params import ParamsError, parse_params
from ganlab.config.parse import flatten


def test_defaults_flow_into_variants(tiny_raw):
    tiny_raw["training"]["lr"] = 0.001
    tiny_raw["variants"]["x"] = {"loss": "hinge", "betas": [0.0, 0.9]}
    p = parse_params(tiny_raw)
    assert p.variants["x"].lr == 0.001
    assert p.variants["x"].betas == (0.0, 0.9)
    assert p.variants["x"].loss == "hinge"
    assert p.variants["gan"].betas == (0.5, 0.999)


def test_unknown_loss_names_key_and_allowed(tiny_raw):
    tiny_raw["variants"]["gan"]["loss"] = "hinje"
    with pytest.raises(ParamsError) as e:
        parse_params(tiny_raw)
    msg = str(e.value)
    assert msg.startswith("variants.gan.loss: 'hinje' is not one of minimax, nonsaturating")
    assert "hinge" in msg and "wasserstein" in msg


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        (("training", "lr"), -0.1, "training.lr: -0.1 must be > 0"),
        (("variants", "gan", "lr"), -1, "variants.gan.lr: -1.0 must be > 0"),
        (("training", "epochs"), "ten", "training.epochs: 'ten' must be an integer"),
        (("training", "betas"), [0.5], "training.betas: [0.5] must be a list of 2 numbers"),
        (("dataset", "name"), "imagenet", "dataset.name: 'imagenet' is not one of"),
        (("variants", "gan", "instance_noise"), {"anneal": "cosine"},
         "variants.gan.instance_noise.anneal: 'cosine' is not one of linear, exponential"),
        (("training", "spectral_norm"), "yes", "training.spectral_norm: 'yes' must be true or false"),
    ],
)
def test_bad_values_name_the_key(tiny_raw, path, value, fragment):
    node = tiny_raw
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    with pytest.raises(ParamsError, match=None) as e:
        parse_params(tiny_raw)
    assert fragment in str(e.value)


def test_unknown_key_lists_allowed(tiny_raw):
    tiny_raw["variants"]["gan"]["learning_rate"] = 0.1
    with pytest.raises(ParamsError) as e:
        parse_params(tiny_raw)
    assert "variants.gan.learning_rate: unknown key; allowed:" in str(e.value)
    assert " lr," in str(e.value)


def test_invalid_combinations_rejected_unless_overridden(tiny_raw):
    tiny_raw["variants"]["gan"].update({"clip": 0.01, "spectral_norm": True})
    with pytest.raises(ParamsError, match="clip and spectral_norm"):
        parse_params(tiny_raw)
    tiny_raw["variants"]["gan"]["allow_unusual"] = True
    assert parse_params(tiny_raw).variants["gan"].clip == 0.01


def test_wasserstein_needs_a_lipschitz_constraint(tiny_raw):
    tiny_raw["variants"]["gan"]["loss"] = "wasserstein"
    with pytest.raises(ParamsError, match="needs a Lipschitz constraint"):
        parse_params(tiny_raw)
    tiny_raw["variants"]["gan"]["gp"] = 10.0
    p = parse_params(tiny_raw).variants["gan"]
    assert p.resolved_d_norm == "none"


def test_gp_with_batchnorm_rejected(tiny_raw):
    tiny_raw["variants"]["gan"].update({"gp": 10.0, "d_norm": "batch"})
    with pytest.raises(ParamsError, match="d_norm"):
        parse_params(tiny_raw)


def test_bad_variant_name(tiny_raw):
    tiny_raw["variants"]["Bad-Name"] = {}
    with pytest.raises(ParamsError, match="variants.Bad-Name"):
        parse_params(tiny_raw)


def test_flatten_is_flat(tiny_params):
    flat = flatten(tiny_params.variants["gan"])
    assert flat["instance_noise.std"] == 0.0
    assert flat["betas"] == "0.5,0.999"
    assert all(not isinstance(v, dict) for v in flat.values())


def test_every_shipped_variant_names_its_loss():
    """`dvc exp run -S variants.<V>.loss=hinge` can only override a key params.yaml has (DVC
    refuses a new one without `+`), so every default variant states its loss."""
    import yaml

    from tests.conftest import REPO

    variants = yaml.safe_load((REPO / "params.yaml").read_text())["variants"]
    assert [v for v, spec in variants.items() if "loss" not in spec] == []


def test_exponent_floats_written_by_dvc_set_parse_as_numbers(tmp_path, tiny_raw):
    # `dvc exp run -S variants.wgan.lr=5e-5` writes `lr: 5e-05`, which PyYAML (YAML 1.1)
    # reads as a string; it must still be the number the user set
    import yaml

    from ganlab.config.params import load_params

    path = tmp_path / "params.yaml"
    tiny_raw["variants"]["gan"]["lr"] = 1.0  # replaced by the text below
    text = yaml.safe_dump(tiny_raw, sort_keys=False).replace("lr: 1.0", "lr: 5e-05", 1)
    assert "lr: 5e-05" in text and yaml.safe_load(text)["variants"]["gan"]["lr"] == "5e-05"
    path.write_text(text)
    assert load_params(path).variant("gan").lr == 5e-05
    tiny_raw["variants"]["gan"]["lr"] = "fast"
    with pytest.raises(ParamsError, match="variants.gan.lr: 'fast' must be a number"):
        parse_params(tiny_raw)
