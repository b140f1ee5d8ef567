"""`ganlab score PATH`: any set of images scored as `evaluate` scores a variant's samples.

PATH is an `.npz` with a uint8 `images` array (N, C, H, W), as samples/<V>/samples.npz and
`ganlab generate -o x.npz` write, or a folder of image files (PNG; read in the sorted order of
their names, so name them zero-padded). Its first N images are scored, N being evaluate's
(ganlab.metrics.scoring.comparison_n), with every metric of evaluate, against the same
references, in the feature space of this project's judge (and Inception's when
`evaluate.inception_weights` is set), beside metrics/floor.json. Not a DVC stage: a tool on
the project's outputs, run by hand.

KID draws random subsets, seeded by a key: evaluate's key is the variant's name. `--as V`
draws as `evaluate V` does, so V's own samples.npz scores exactly metrics/eval/V.json's
numbers; without it the key is `score`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ganlab.config.params import Params
from ganlab.data.images import load_meta, load_split
from ganlab.metrics.scoring import References, inception_extractor, score_all_extractors
from ganlab.nets.judge import JudgeExtractor, load_judge
from ganlab.report.table import COLUMNS, metric_cells
from ganlab.runtime.paths import FLOOR_PATH, JUDGE_PATH, PREPARED_DIR
from ganlab.tracking import runs as tracking
from ganlab.util import GanlabError, read_json, resolve_device, write_json

SEED_KEY = "score"  # KID's subsets without --as
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def _shape(shape) -> str:
    return "x".join(str(int(s)) for s in shape)


def _image_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")
                  and f.suffix.lower() in IMAGE_SUFFIXES)


def check_path(path: Path) -> None:
    if path.is_dir():
        return
    if not path.exists():
        raise GanlabError(f"{path}: not found (score an .npz with an `images` array, or a folder "
                          "of PNG files)")
    if path.suffix != ".npz":
        raise GanlabError(f"{path}: not an .npz file or a folder of PNG files")


def _npz_images(path: Path, shape: tuple[int, ...] | None) -> np.ndarray:
    import zipfile

    try:
        with np.load(path) as z:
            if "images" not in z.files:
                raise GanlabError(f"{path}: no `images` array (it has: {', '.join(z.files) or 'none'})")
            images = z["images"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise GanlabError(f"{path}: not a readable .npz ({e})") from None
    if images.dtype != np.uint8 or images.ndim != 4:
        raise GanlabError(f"{path}: `images` is {images.dtype} {images.shape}; score reads uint8 "
                          "(N, C, H, W), as samples.npz holds")
    if shape is not None and images.shape[1:] != shape:
        raise GanlabError(f"{path}: images are {_shape(images.shape[1:])} (CxHxW) but this "
                          f"project's are {_shape(shape)} ({PREPARED_DIR}); wrong size or channels")
    return images


def _png(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode == "1":
                im = im.convert("L")
            arr = np.asarray(im)
    except UnidentifiedImageError:
        raise GanlabError(f"{path}: not a readable image (Pillow cannot identify its format)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise GanlabError(f"{path}: not a readable image ({e})") from None
    if arr.dtype != np.uint8:
        raise GanlabError(f"{path}: {arr.dtype} pixels; score reads 8-bit images")
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    if arr.shape != shape:
        raise GanlabError(f"{path}: a {_shape(arr.shape)} (CxHxW) image but this project's are "
                          f"{_shape(shape)} ({PREPARED_DIR}); wrong size or channels")
    return arr


def read_images(path: Path, shape: tuple[int, ...], n: int, n_test: int) -> tuple[np.ndarray, int]:
    """The first `n` images of PATH as uint8 (n, C, H, W), and how many it holds; refused when
    there are fewer than `n` or when they are not `shape` (C, H, W)."""
    if path.is_dir():
        files = _image_files(path)
        count = len(files)
    else:
        images = _npz_images(path, shape)
        count = len(images)
    if count < n:
        raise GanlabError(
            f"{path}: {count} images, fewer than N={n}: score compares exactly N images as "
            f"evaluate does (N = min of evaluate.n_samples, sample.n_samples and the "
            f"{n_test} held-out images)")
    if path.is_dir():
        return np.stack([_png(f, shape) for f in files[:n]]), count
    return images[:n], count


def _references(params: Params, data_dir: Path):
    """The project's splits, references and floor; refused when the judge or floor is missing
    or the floor was scored on another N."""
    train, test = load_split(data_dir / "train.npz"), load_split(data_dir / "test.npz")
    ref = References.build(params, train, test)
    if not JUDGE_PATH.exists():
        raise GanlabError(f"{JUDGE_PATH}: no judge in this project: train it first "
                          "(`ganlab judge`, or `dvc repro floor`)")
    if not FLOOR_PATH.exists():
        raise GanlabError(f"{FLOOR_PATH}: no floor in this project: score it first "
                          "(`ganlab floor`, or `dvc repro floor`)")
    floor = read_json(FLOOR_PATH, "ganlab floor")
    if floor.get("n_compared") != ref.n:
        raise GanlabError(f"{FLOOR_PATH} was scored on N={floor.get('n_compared')} images but "
                          f"params.yaml gives N={ref.n}; rerun `ganlab floor` so both use the same N")
    return train, test, ref, floor


def _numbers(prefix: str, d: dict) -> dict[str, float]:
    return {f"{prefix}/{k}": v for k, v in d.items() if isinstance(v, int | float)}


def table(floor: dict, metrics: dict, name: str) -> list[str]:
    """The report's main-table columns: a header, the floor row and this row."""
    return ["| images | " + " | ".join(c[0] for c in COLUMNS) + " |",
            "|" + "---|" * (len(COLUMNS) + 1),
            "| floor (real held-out) | " + " | ".join(metric_cells(floor)) + " |",
            f"| {name} | " + " | ".join(metric_cells(metrics)) + " |"]


@tracking.fail_run_on_error  # a --log run of a scoring that raises ends FAILED
def run_score(params: Params, path: Path, out: Path, variant: str | None = None, log: bool = False,
              data_dir: Path = PREPARED_DIR, echo=print) -> dict:
    """Score the first N images of `path`; write `out` (JSON); with `log`, an MLflow run."""
    if variant is not None:
        params.variant(variant)  # --as names a variant of params.yaml
    key = variant or SEED_KEY
    device = resolve_device(params.device)
    inception = inception_extractor(params, device)  # a bad weights path fails before work
    check_path(path)
    train, test, ref, floor = _references(params, data_dir)
    images, count = read_images(path, tuple(train.images.shape[1:]), ref.n, len(test.labels))
    judge = JudgeExtractor(load_judge(JUDGE_PATH, device=device), device)
    metrics = score_all_extractors(params, judge, inception, images, ref, key)
    result = {"scored": str(path), "n_images": count, "seed_key": key, "metrics": metrics,
              "floor": floor}
    write_json(out, result)
    if log:
        meta = load_meta(data_dir)
        tags = tracking.run_tags("score", meta["train_sha256"], source="ganlab score")
        tags.update({"mlflow.runName": f"score {path.name}", "scored_path": str(path)})
        run_id = tracking.start_run("score", {"scored": str(path), "n_images": count,
                                              "n_compared": ref.n, "seed_key": key}, tags)
        tracking.log_metrics(run_id, [{"step": 0, **_numbers("eval", metrics),
                                       **_numbers("floor", floor)}])
        tracking.log_artifacts(run_id, [out])
        tracking.set_terminated(run_id)
        result["mlflow_run_id"] = run_id
    for line in table(floor, metrics, path.name):
        echo(line)
    echo(f"score {path}: fid_judge {metrics['fid_judge']} (floor {floor.get('fid_judge')}) on "
         f"N={ref.n} of {count} images -> {out}"
         + (f"; MLflow run {result['mlflow_run_id']}" if log else ""))
    return result
