"""The conditional and cycle generators as MLflow models: registered by a tiny training, equal
to the trainer's own nets when loaded back, and driven by `ganlab generate` (--label, --input)
from nothing but the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import tiny_params_dict, write_params
from tests.mlflow_store import project_env

KIND_VARIANTS = {
    "cg": {"kind": "conditional", "conditional": {"g_cond": "cbn"}, "epochs": 1},
    "cy": {"kind": "cycle", "arch": "dcgan", "width": 4, "batch_size": 128,
           "loss": "least_squares", "epochs": 1, "cycle": {"res_blocks": 1, "pool_size": 8}},
}


def _raw() -> dict:
    raw = tiny_params_dict()
    raw["variants"] = KIND_VARIANTS
    raw["monitor"]["every"] = 0  # no judge in this store
    return raw


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from ganlab.config.params import parse_params
    from ganlab.stages.prepare import run_prepare
    from ganlab.stages.prepare_uci import run_prepare_uci
    from ganlab.stages.train import run_train

    root = tmp_path_factory.mktemp("kinds_store")
    (root / "dvc.yaml").write_text("stages: {}\n")
    raw = _raw()
    write_params(root / "params.yaml", raw)
    params = parse_params(raw)
    with project_env(root):
        run_prepare(params)
        run_prepare_uci(params)
        for v in KIND_VARIANTS:
            run_train(params, v, echo=lambda *_: None)
    return root


def _client(root: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(*[f"sqlite:///{root / 'mlflow.db'}"] * 2)  # tracking and registry


def _trained(root: Path, variant: str) -> torch.nn.Module:
    """The trainer's own sampler, rebuilt from models/variants/<V>/generator.pt."""
    from ganlab.config.params import parse_params
    from ganlab.kinds.sampling import load_generator

    with project_env(root):
        return load_generator(parse_params(_raw()), variant, torch.device("cpu"))


def _run_id(root: Path, variant: str) -> str:
    return json.loads((root / f"models/variants/{variant}/mlflow_run.json").read_text())["run_id"]


def test_conditional_generator_is_a_registered_one_tensor_model(store):
    import mlflow.pytorch
    from mlflow.models import get_model_info

    c = _client(store)
    (version,) = c.search_model_versions("name='ganlab-cg'")
    assert version.run_id == _run_id(store, "cg")
    with project_env(store):
        uri = f"models:/ganlab-cg/{version.version}"
        info = get_model_info(uri)
        g = mlflow.pytorch.load_model(uri)
    latent = info.metadata["latent_dim"]
    assert info.metadata["kind"] == "conditional" and info.metadata["n_classes"] == 10
    spec_in, spec_out = info.signature.inputs.inputs[0], info.signature.outputs.inputs[0]
    assert (spec_in.name, spec_in.shape) == ("z_label", (-1, latent + 1))
    assert (spec_out.name, spec_out.shape) == ("image", (-1, 1, 28, 28))
    own = _trained(store, "cg")
    z = torch.randn(13, latent, generator=torch.Generator().manual_seed(1))
    y = torch.arange(13) % 10
    with torch.no_grad():
        expected = own(z, y)
        for rows in (slice(0, 13), slice(0, 1)):  # any batch, one row too
            got = g(torch.cat([z, y.float()[:, None]], 1)[rows])
            torch.testing.assert_close(got, expected[rows], rtol=0, atol=1e-6)
    run = c.get_run(version.run_id)
    assert "model_log_seconds" in run.data.metrics
    assert "model" not in {a.path for a in c.list_artifacts(version.run_id)}


def test_cycle_generators_are_registered_in_both_directions(store):
    import mlflow.pytorch
    from mlflow.models import get_model_info

    c = _client(store)
    own = _trained(store, "cy")
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(2)) * 2 - 1
    for name, net, src, dst in (("ganlab-cy", own.ab, "mnist", "uci"),
                                ("ganlab-cy-reverse", own.ba, "uci", "mnist")):
        (version,) = c.search_model_versions(f"name='{name}'")
        assert version.run_id == _run_id(store, "cy")
        with project_env(store):
            info = get_model_info(f"models:/{name}/{version.version}")
            g = mlflow.pytorch.load_model(f"models:/{name}/{version.version}")
        assert (info.metadata["kind"], info.metadata["source"], info.metadata["target"]) == (
            "cycle", src, dst)
        assert info.signature.inputs.inputs[0].shape == (-1, 1, 28, 28)
        with torch.no_grad():
            torch.testing.assert_close(g(x), net(x), rtol=0, atol=1e-6)
    artifacts = {a.path for a in c.list_artifacts(_run_id(store, "cy"))}
    assert "model" not in artifacts


def _ganlab(args, cwd, uri, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([sys.executable, "-m", "ganlab.cli", "generate", *args,
                           "--tracking-uri", uri], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def _images(path: Path) -> np.ndarray:
    with np.load(path) as z:
        return z["images"]


def test_generate_label_and_input_in_an_empty_folder(store, tmp_path):
    from ganlab.tracking.generate import read_images

    uri = f"sqlite:///{store / 'mlflow.db'}"
    out = _ganlab(["--model", "models:/ganlab-cg/latest", "-n", "12", "--label", "3",
                   "-o", "three.npz", "--seed", "5"], tmp_path, uri)
    assert out.returncode == 0, out.stderr[-2000:]
    three = _images(tmp_path / "three.npz")
    own = _trained(store, "cg")
    from ganlab.config.params import parse_params

    latent = parse_params(_raw()).variant("cg").latent_dim
    z = torch.randn(12, latent, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = ((own(z, torch.full((12,), 3)).clamp(-1, 1) + 1) * 127.5).round()
    assert three.shape == (12, 1, 28, 28)
    assert np.abs(three.astype(int) - expected.numpy().astype(int)).max() <= 1
    # without --label: classes 0..9 in turn, one per column of a 10-wide grid
    out = _ganlab(["--model", "models:/ganlab-cg/latest", "-n", "7", "-o", "mixed.png"],
                  tmp_path, uri)
    assert out.returncode == 0 and "labels 0..9" in out.stdout, out.stderr[-2000:]
    # the cycle models translate those digits: .npz, or the .png grid (its 3 blank tiles dropped)
    out = _ganlab(["--model", "models:/ganlab-cy/latest", "--input", "three.npz", "-n", "8",
                   "-o", "uci.npz"], tmp_path, uri)
    assert out.returncode == 0, out.stderr[-2000:]
    with torch.no_grad():
        expected = _trained(store, "cy").ab(read_images(tmp_path / "three.npz")[:8])
    uci = _images(tmp_path / "uci.npz")
    assert uci.shape == (8, 1, 28, 28)
    assert np.abs(uci.astype(int) - ((expected.clamp(-1, 1) + 1) * 127.5).round().numpy()).max() <= 1
    out = _ganlab(["--model", "models:/ganlab-cy-reverse/latest", "--input", "mixed.png",
                   "-o", "back.npz"], tmp_path, uri)
    assert out.returncode == 0, out.stderr[-2000:]
    assert _images(tmp_path / "back.npz").shape == (7, 1, 28, 28)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back.npz", "mixed.png", "three.npz",
                                                         "uci.npz"]


def test_png_grid_reads_back_as_the_npz_images(tmp_path):
    from ganlab.tracking.generate import read_images, write_images

    x = torch.rand(7, 1, 28, 28, generator=torch.Generator().manual_seed(3)) * 2 - 1
    write_images(x, tmp_path / "g.png", nrow=3)
    write_images(x, tmp_path / "g.npz", nrow=3)
    write_images(x[:1], tmp_path / "one.png", nrow=8)
    grid, arr = read_images(tmp_path / "g.png"), read_images(tmp_path / "g.npz")
    assert grid.shape == arr.shape == (7, 1, 28, 28)
    torch.testing.assert_close(grid, arr, rtol=0, atol=1.01 / 127.5)  # rounding, at most 1/255
    assert read_images(tmp_path / "one.png").shape == (1, 1, 28, 28)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--model", "models:/ganlab-cg/latest", "--label", "10"], "--label 10: must be in 0..9"),
        (["--model", "models:/ganlab-cy/latest", "--label", "3", "--input", "ok.npz"],
         "--label 3: models:/ganlab-cy/latest is a cycle model"),
        (["--model", "models:/ganlab-cy/latest"], "--input: models:/ganlab-cy/latest translates"),
        (["--model", "models:/ganlab-cg/latest", "--input", "ok.npz"],
         "--input: models:/ganlab-cg/latest is a conditional model"),
        # an unreadable --input fails before the store is opened (the model does not exist)
        (["--model", "models:/ganlab-nope/latest", "--input", "bad.npz"], "--input bad.npz: cannot read"),
        (["--model", "models:/ganlab-nope/latest", "--input", "gone.npz"], "--input gone.npz: no such file"),
    ],
)
def test_generate_rejects_options_that_do_not_fit_the_model(store, tmp_path, args, fragment):
    np.savez(tmp_path / "ok.npz", images=np.zeros((2, 1, 28, 28), np.uint8))
    (tmp_path / "bad.npz").write_bytes(b"not a zip file")
    out = _ganlab([*args, "-o", "x.png"], tmp_path, f"sqlite:///{store / 'mlflow.db'}")
    assert out.returncode == 2 and fragment in out.stderr, out.stderr[-2000:]
    assert len(out.stderr.splitlines()) == 1 and not (tmp_path / "x.png").exists()


def test_logged_models_keep_their_pins_and_the_skipped_check_is_restored(store):
    import mlflow.utils.environment as env
    from mlflow.artifacts import download_artifacts

    from ganlab.tracking.models import _no_requirement_check, pip_requirements

    original = env.warn_dependency_requirement_mismatches
    with _no_requirement_check():
        assert env.warn_dependency_requirement_mismatches is not original
    assert env.warn_dependency_requirement_mismatches is original
    c = _client(store)
    (version,) = c.search_model_versions("name='ganlab-cg'")
    with project_env(store):
        path = download_artifacts(f"models:/ganlab-cg/{version.version}/requirements.txt")
    assert set(pip_requirements()) <= set(Path(path).read_text().split())
