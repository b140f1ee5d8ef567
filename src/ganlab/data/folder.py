"""`dataset.name: folder`: your own images, one subfolder per class (torchvision's ImageFolder
convention: the labels are the sorted subfolder names, 0, 1, ...).

torchvision's `ImageFolder` lists the files (every image extension it knows, in subfolders of
a class folder too; names starting with a dot are skipped, as are dot-folders such as
`.ipynb_checkpoints`); Pillow decodes each one, turns it upright (EXIF), converts it to
`dataset.channels` (1: Pillow's "L" luma, 3: "RGB") and resizes it to `dataset.image_size`
square (a non-square image is centre-cropped to a square first: `ImageOps.fit`, bilinear;
an image already that size keeps its pixels). The split is the embedded set's: `test_fraction`
of every class held out, then `limit` and the seeded shuffle (ganlab.data.images).

Only stage `prepare` imports this module, so a change here reruns `prepare` and nothing that
does not read its outputs.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np

from ganlab.config.params import DatasetParams
from ganlab.data.images import Split, shuffled, stratified_limit, stratified_split
from ganlab.util import GanlabError

KEY = "dataset.root"


def _image_folder(root: Path):
    """torchvision's ImageFolder over `root`, minus hidden files and folders."""
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

    class Folder(ImageFolder):
        def find_classes(self, directory):  # ImageFolder's, without dot-folders
            classes = sorted(e.name for e in os.scandir(directory)
                             if e.is_dir() and not e.name.startswith("."))
            if not classes:
                raise FileNotFoundError(directory)
            return classes, {c: i for i, c in enumerate(classes)}

    def is_image(path: str) -> bool:
        return not os.path.basename(path).startswith(".") and has_file_allowed_extension(
            path, IMG_EXTENSIONS)

    try:
        return Folder(str(root), is_valid_file=is_image, allow_empty=True), IMG_EXTENSIONS
    except FileNotFoundError:
        loose = sum(1 for f in root.iterdir() if f.is_file() and is_image(str(f)))
        hint = f" ({loose} images lie in it directly)" if loose else ""
        raise GanlabError(f"{KEY}: {root} has no class subfolders{hint}; put each class's images "
                          "in a subfolder of its own (labels = the sorted subfolder names)") from None


def list_images(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """(class names, [(file, label)]) of a folder dataset; one clear error for a missing folder,
    no images, an empty class folder or fewer than 2 classes."""
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "not found"
        raise GanlabError(f"{KEY}: {root} {what} (dataset.name folder reads one subfolder of "
                          "images per class)")
    ds, extensions = _image_folder(root)
    samples = [(Path(f), int(c)) for f, c in ds.samples]
    if not samples:
        raise GanlabError(f"{KEY}: no images in the class subfolders of {root} "
                          f"({', '.join(ds.classes)}); image files end in {' '.join(extensions)}")
    counts = np.bincount([c for _, c in samples], minlength=len(ds.classes))
    empty = [name for name, n in zip(ds.classes, counts) if n == 0]
    if empty:
        raise GanlabError(f"{KEY}: class folder(s) with no images in {root}: {', '.join(empty)} "
                          "(remove them or add images)")
    if len(ds.classes) < 2:
        raise GanlabError(f"{KEY}: {root} has one class folder ({ds.classes[0]}); a folder "
                          "dataset needs at least 2 (the judge is a classifier)")
    return list(ds.classes), samples


def read_image(data: bytes, path: Path, channels: int, size: int) -> np.ndarray:
    """uint8 (channels, size, size) of an encoded image; a GanlabError naming `path` if
    Pillow cannot decode it."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            im = im.convert("L" if channels == 1 else "RGB")
            if im.size != (size, size):
                im = ImageOps.fit(im, (size, size), method=Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except UnidentifiedImageError:
        raise GanlabError(f"{KEY}: {path} is not a readable image (Pillow cannot identify its "
                          "format)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise GanlabError(f"{KEY}: {path} is not a readable image ({e})") from None
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def read_folder(p: DatasetParams) -> tuple[Split, dict]:
    """Every image of the folder as one Split, and what meta.json records of the source: its
    class names, file count and fingerprint (sha256 of every file's relative path, label and
    bytes: it changes when any image is added, removed, renamed or edited)."""
    root = Path(p.root)
    classes, samples = list_images(root)
    fingerprint = hashlib.sha256()
    images = np.empty((len(samples), p.channels, p.image_size, p.image_size), dtype=np.uint8)
    for i, (path, label) in enumerate(samples):
        try:
            data = path.read_bytes()
        except OSError as e:
            raise GanlabError(f"{KEY}: {path} cannot be read ({e.strerror or e})") from None
        rel = path.relative_to(root).as_posix()
        fingerprint.update(f"{rel}\t{label}\t{hashlib.sha256(data).hexdigest()}\n".encode())
        images[i] = read_image(data, path, p.channels, p.image_size)
    labels = np.asarray([c for _, c in samples], dtype=np.int64)
    source = {"source_root": p.root, "class_names": classes, "source_files": len(samples),
              "source_sha256": fingerprint.hexdigest()}
    return Split(images, labels), source


def load_folder(p: DatasetParams, seed: int) -> tuple[Split, Split, dict]:
    """Train and test splits of the folder (as `load_dataset` makes them), and the source's
    meta.json entries."""
    everything, source = read_folder(p)
    tr, te = stratified_split(everything.labels, p.test_fraction, seed)
    if len(te) == 0:
        raise GanlabError(f"{KEY}: {len(tr)} images hold out none at dataset.test_fraction "
                          f"{p.test_fraction}; add images (or raise test_fraction)")
    train = Split(everything.images[tr], everything.labels[tr])
    test = Split(everything.images[te], everything.labels[te])
    train = stratified_limit(train, p.limit, seed)
    return shuffled(train, seed, "train"), shuffled(test, seed, "test"), source
