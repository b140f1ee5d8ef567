"""README "Your own data", run as written: a folder of 2 classes x 60 PNGs -> prepare -> judge
-> floor -> train one variant for one epoch -> sample -> `ganlab score`; then `score` against
`evaluate` (the same numbers, from the .npz and from a folder of PNGs), its refusals, its
MLflow run, and the system metrics of the real training run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import REPO, tiny_params_dict, write_params
from tests.e2e import env_for
from tests.image_folder import write_image_folder
from tests.mlflow_store import project_env


def _readme_example() -> tuple[dict, str]:
    """The yaml and bash blocks of README's "Your own data" section."""
    text = (REPO / "README.md").read_text()
    section = re.split(r"\n##+ ", text.split("### Your own data", 1)[1], maxsplit=1)[0]
    yaml_block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    bash_block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return yaml.safe_load(yaml_block), bash_block


def _raw(dataset: dict) -> dict:
    raw = tiny_params_dict()
    raw["dataset"].update(dataset)
    raw["variants"] = {"gan": {"loss": "nonsaturating", "epochs": 1}}  # one training epoch
    raw["monitor"]["every"] = 0  # no quality checks inside a one-epoch run
    return raw


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    root = tmp_path_factory.mktemp("own_data")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    (root / "dvc.yaml").write_text("stages: {}\n")
    dataset, script = _readme_example()
    write_params(root / "params.yaml", _raw(dataset["dataset"]))
    write_image_folder(root / dataset["dataset"]["root"], per_class=60)
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=root, capture_output=True,
                         text=True, timeout=900, env=env_for(uri))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return root, out.stdout + out.stderr


def _client(root: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(*[f"sqlite:///{root / 'mlflow.db'}"] * 2)


def test_the_readme_example_runs(example):
    root, out = example
    meta = json.loads((root / "data/prepared/meta.json").read_text())
    assert meta["dataset"] == "folder" and meta["class_names"] == ["disc", "square"]
    assert (meta["n_train"], meta["n_test"], meta["image_shape"]) == (96, 24, [1, 28, 28])
    assert "prepare: 96 train / 24 test images of folder (1, 28, 28)" in out  # as the README says
    score = json.loads((root / "gan_score.json").read_text())
    assert score["metrics"]["n_compared"] == 24 and score["n_images"] == 120
    assert score["seed_key"] == "gan" and score["floor"]["n_compared"] == 24
    assert "| floor (real held-out) |" in out and "| samples.npz |" in out and "N=24" in out


def test_score_gives_evaluates_numbers_from_the_npz_and_from_pngs(example):
    from PIL import Image

    from ganlab.config.params import load_params
    from ganlab.stages.evaluate import run_evaluate
    from ganlab.stages.score import run_score

    root, _ = example
    quiet = lambda *_: None  # noqa: E731
    with project_env(root):
        params = load_params("params.yaml")
        evaluated = run_evaluate(params, "gan", echo=quiet)
        assert json.loads(Path("gan_score.json").read_text())["metrics"] == evaluated  # the CLI's
        with np.load("samples/gan/samples.npz") as z:
            images = z["images"]
        pngs = Path("pngs")
        pngs.mkdir()
        for i, im in enumerate(images):
            Image.fromarray(im[0]).save(pngs / f"{i:05d}.png")
        from_pngs = run_score(params, pngs, Path("pngs.json"), "gan", echo=quiet)
        assert from_pngs["metrics"] == evaluated and from_pngs["n_images"] == len(images)
        # without --as, KID's subsets are score's own draw; every other number is the same
        own = run_score(params, Path("samples/gan/samples.npz"), Path("own.json"), echo=quiet)
        assert own["seed_key"] == "score"
        assert {k: v for k, v in own["metrics"].items() if not k.startswith("kid_")} == {
            k: v for k, v in evaluated.items() if not k.startswith("kid_")}


def test_score_logs_an_mlflow_run(example):
    from ganlab.config.params import load_params
    from ganlab.stages.score import run_score

    root, _ = example
    with project_env(root):
        res = run_score(load_params("params.yaml"), Path("samples/gan/samples.npz"),
                        Path("logged.json"), "gan", log=True, echo=lambda *_: None)
    run = _client(root).get_run(res["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["variant"] == "score"
    assert run.data.tags["mlflow.source.name"] == "ganlab score"
    assert run.data.metrics["eval/fid_judge"] == res["metrics"]["fid_judge"]
    assert run.data.metrics["floor/fid_judge"] == res["floor"]["fid_judge"]
    assert run.data.params["n_compared"] == "24"
    assert [a.path for a in _client(root).list_artifacts(run.info.run_id)] == ["logged.json"]


def _refused(root: Path, params_dir: Path | None, path, fragment: str, **kw) -> None:
    from ganlab.config.params import load_params
    from ganlab.stages.score import run_score
    from ganlab.util import GanlabError

    with project_env(params_dir or root):
        with pytest.raises(GanlabError) as e:
            run_score(load_params(root / "params.yaml"), Path(path), Path("refused.json"),
                      echo=lambda *_: None, **kw)
        assert not Path("refused.json").exists()
    assert fragment in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_score_refuses_in_one_line(example, tmp_path):
    from PIL import Image

    root, _ = example
    with np.load(root / "samples/gan/samples.npz") as z:
        images = z["images"]
    np.savez(tmp_path / "rgb.npz", images=np.repeat(images, 3, axis=1))
    np.savez(tmp_path / "big.npz", images=np.zeros((30, 1, 32, 32), np.uint8))
    np.savez(tmp_path / "few.npz", images=images[:23])
    np.savez(tmp_path / "noimages.npz", x=images)
    np.savez(tmp_path / "float.npz", images=images.astype(np.float32))
    (tmp_path / "pngs").mkdir()
    for i in range(30):
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "pngs" / f"{i:02d}.png")
    (tmp_path / "few_pngs").mkdir()
    for i in range(5):
        Image.fromarray(images[i, 0]).save(tmp_path / "few_pngs" / f"{i}.png")
    cases = [
        (tmp_path / "rgb.npz", "images are 3x28x28 (CxHxW) but this project's are 1x28x28"),
        (tmp_path / "big.npz", "images are 1x32x32 (CxHxW) but this project's are 1x28x28"),
        (tmp_path / "few.npz", "23 images, fewer than N=24"),
        (tmp_path / "few_pngs", "5 images, fewer than N=24"),
        (tmp_path / "pngs", "00.png: a 1x32x32 (CxHxW) image but this project's are 1x28x28"),
        (tmp_path / "noimages.npz", "no `images` array (it has: x)"),
        (tmp_path / "float.npz", "`images` is float32"),
        (tmp_path / "nope.npz", "nope.npz: not found"),
        (root / "params.yaml", "not an .npz file or a folder of PNG files"),
    ]
    for path, fragment in cases:
        _refused(root, None, path, fragment)
    _refused(root, None, root / "samples/gan/samples.npz", "variant 'nope' is not in", variant="nope")
    # a project without its judge, then without its floor
    bare = tmp_path / "bare"
    shutil.copytree(root / "data/prepared", bare / "data/prepared")
    (bare / "dvc.yaml").write_text("stages: {}\n")
    _refused(root, bare, root / "samples/gan/samples.npz", "no judge in this project: train it "
             "first (`ganlab judge`")
    shutil.copytree(root / "models/judge", bare / "models/judge")
    _refused(root, bare, root / "samples/gan/samples.npz", "no floor in this project: score it "
             "first (`ganlab floor`")


def test_score_cli_refuses_in_one_line(example, tmp_path):
    root, _ = example
    with np.load(root / "samples/gan/samples.npz") as z:
        np.savez(tmp_path / "few.npz", images=z["images"][:10])
    out = subprocess.run([sys.executable, "-m", "ganlab.cli", "score", str(tmp_path / "few.npz")],
                         cwd=root, capture_output=True, text=True, timeout=300,
                         env=env_for(f"sqlite:///{root / 'mlflow.db'}"))
    lines = [x for x in out.stderr.strip().splitlines() if x.strip()]
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert lines[0].startswith("ganlab: error: ") and "10 images, fewer than N=24" in lines[0]
    assert not (root / "score.json").exists()


def test_the_training_run_has_system_metrics(example):
    root, _ = example
    c = _client(root)
    run_id = json.loads((root / "models/variants/gan/mlflow_run.json").read_text())["run_id"]
    run = c.get_run(run_id)
    assert run.info.status == "FINISHED"
    for key in ("system/cpu_utilization_percentage", "system/system_memory_usage_megabytes",
                "system/system_memory_usage_percentage"):
        history = c.get_metric_history(run_id, key)
        assert history and all(m.value >= 0 for m in history), key
    memory = c.get_metric_history(run_id, "system/system_memory_usage_megabytes")
    assert max(m.value for m in memory) > 100  # megabytes in use while it trained
