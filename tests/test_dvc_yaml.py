"""dvc.yaml stays in step with params.yaml and declares what the stages read."""

import re

import yaml

from tests.conftest import REPO


def test_top_level_plots_cover_every_default_variant():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    plotted = set()
    for plot in dvc["plots"]:
        (spec,) = plot.values()
        if not isinstance(spec["y"], dict):
            continue  # a single-file plot (the theory lab's)
        plotted |= {re.search(r"curves/(\w+)\.csv", f).group(1) for f in spec["y"]}
    assert plotted == set(params["variants"])


def test_variant_stages_depend_on_their_own_params_key():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage in ("train", "sample", "evaluate", "toy"):
        assert dvc[stage]["foreach"] == "${variants}"
        assert "variants.${key}" in dvc[stage]["do"]["params"]
        assert "training" not in dvc[stage]["do"]["params"] or stage != "evaluate"
