"""The whole pipeline (`dvc repro`, tiny params) on `dataset.name: folder`: RGB images at 32x32
in a folder the test writes, an MLP and a DCGAN variant; then an edited image reruns `prepare`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from tests.e2e import copy_project, sh
from tests.image_folder import write_image_folder

pytestmark = pytest.mark.slow


def _own_images(root, raw):
    write_image_folder(root / "my_images", per_class=60, rgb=True, sizes=(32, 40))
    raw["dataset"].update({"name": "folder", "root": "my_images", "channels": 3, "image_size": 32})


def test_folder_dataset_pipeline_end_to_end(tmp_path):
    from PIL import Image

    out = copy_project(tmp_path, {"gan": {"loss": "nonsaturating"},
                                  "dcgan": {"arch": "dcgan", "width": 8}}, setup=_own_images)
    meta = json.loads((tmp_path / "data/prepared/meta.json").read_text())
    assert meta["dataset"] == "folder" and meta["image_shape"] == [3, 32, 32]
    assert meta["class_names"] == ["disc", "square"] and meta["n_train"] + meta["n_test"] == 120
    lock = yaml.safe_load((tmp_path / "dvc.lock").read_text())["stages"]
    (dep,) = [d for d in lock["prepare"]["deps"] if d["path"] == "my_images"]
    assert dep["nfiles"] == 120
    for v in ("gan", "dcgan"):
        ev = json.loads((tmp_path / f"metrics/eval/{v}.json").read_text())
        assert ev["n_compared"] == 24 and ev["fid_judge"] > 0 and 1 <= ev["classes_covered"] <= 2
        with np.load(tmp_path / f"samples/{v}/samples.npz") as z:
            assert z["images"].shape[1:] == (3, 32, 32)
    assert "**gan**" in (tmp_path / "metrics/report.md").read_text() and "report:" in out
    # (dvc.yaml's stages: other dvc.yaml files, opt-in pipelines, were not reproduced)
    assert "Data and pipelines are up to date." in sh(["dvc", "status", "dvc.yaml"], tmp_path)
    # an edited image: prepare's dependency changed, so `dvc repro` would rerun prepare
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "my_images/disc/000.png")
    status = sh(["dvc", "status", "prepare"], tmp_path)
    assert "changed deps" in status and "my_images" in status
    assert "Running stage 'prepare'" in sh(["dvc", "repro", "--dry"], tmp_path)
