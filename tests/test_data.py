import pickle
import struct

import numpy as np
import pytest

from ganlab.config.params import DatasetParams
from ganlab.data.images import (
    load_cifar10,
    load_dataset,
    load_embedded_mnist,
    load_split,
    stratified_limit,
    stratified_split,
    to_unit_range,
)
from ganlab.util import GanlabError


def write_idx_images(path, images: np.ndarray) -> None:
    n, h, w = images.shape
    path.write_bytes(struct.pack(">IIII", 0x00000803, n, h, w) + images.astype(np.uint8).tobytes())


def write_idx_labels(path, labels: np.ndarray) -> None:
    path.write_bytes(struct.pack(">II", 0x00000801, len(labels)) + labels.astype(np.uint8).tobytes())


def make_mnist_layout(root, folder="MNIST", n_train=30, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    data = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n) % 10
        write_idx_images(raw / f"{prefix}-images-idx3-ubyte", imgs)
        write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", labels)
        data[prefix] = (imgs, labels)
    return data


def test_embedded_mnist_split_is_stratified_and_seeded():
    tr, te = load_embedded_mnist(0.2, seed=0)
    assert tr.images.shape == (4000, 1, 28, 28) and te.images.shape == (1000, 1, 28, 28)
    assert np.bincount(te.labels).tolist() == [100] * 10
    tr2, te2 = load_embedded_mnist(0.2, seed=0)
    assert np.array_equal(te.images, te2.images)
    _, te3 = load_embedded_mnist(0.2, seed=1)
    assert not np.array_equal(te.images, te3.images)
    x = to_unit_range(tr.images[:10])
    assert x.min() >= -1 and x.max() <= 1 and x.min() == -1


def test_stratified_split_disjoint_and_complete():
    labels = np.repeat(np.arange(4), 25)
    a, b = stratified_split(labels, 0.2, seed=3)
    assert len(np.intersect1d(a, b)) == 0 and len(a) + len(b) == 100
    assert np.bincount(labels[b]).tolist() == [5] * 4


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_torchvision_mnist_loader_reads_idx_files(tmp_path, name, folder):
    data = make_mnist_layout(tmp_path, folder)
    train, test = load_dataset(DatasetParams(name=name, root=str(tmp_path)), seed=0)
    assert train.images.shape == (30, 1, 28, 28)
    # the same images with the same labels, in a seeded order (see the shuffle test)
    for split, (imgs, labels) in ((train, data["train"]), (test, data["t10k"])):
        order = [next(i for i in range(len(imgs)) if np.array_equal(imgs[i], x)) for x in split.images[:, 0]]
        assert sorted(order) == list(range(len(imgs)))
        assert np.array_equal(split.labels, labels[order])


def test_torchvision_loader_missing_files_is_a_clear_error(tmp_path):
    with pytest.raises(GanlabError, match="dataset.root: mnist not found under .*download"):
        load_dataset(DatasetParams(name="mnist", root=str(tmp_path)), seed=0)


def test_cifar10_loader_reads_pickled_batches(tmp_path):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                 b"labels": [0, 1, 2, 3]}
        (base / name).write_bytes(pickle.dumps(batch))
    train, test = load_cifar10(tmp_path)
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
    (base / "test_batch").unlink()
    with pytest.raises(GanlabError, match="test_batch"):
        load_cifar10(tmp_path)


def test_limit_keeps_classes_balanced():
    tr, _ = load_embedded_mnist(0.2, seed=0)
    small = stratified_limit(tr, 200, seed=0)
    assert len(small.labels) == 200 and np.bincount(small.labels).tolist() == [20] * 10


def test_missing_prepared_file_names_it(tmp_path):
    with pytest.raises(GanlabError, match="train.npz: prepared data not found"):
        load_split(tmp_path / "train.npz")


def test_prepared_order_is_mixed_so_contiguous_chunks_hold_every_class():
    # IS splits and held-out halves take contiguous chunks: a class-sorted file breaks them.
    _, te = load_embedded_mnist(0.2, seed=0)
    for chunk in np.array_split(te.labels, 10):
        assert len(np.unique(chunk)) >= 8


def _ordered_mnist(root, n_train=200, n_test=100):
    """An MNIST layout whose files are sorted by class, as a worst case of an ordered file
    (torchvision's test file is ordered by difficulty); pixel 0 holds the row's index."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.repeat(np.arange(10), n // 10)
        imgs = np.zeros((n, 28, 28), dtype=np.uint8)
        imgs[:, 0, 0], imgs[:, 0, 1] = np.arange(n) % 256, np.arange(n) // 256
        write_idx_images(raw / f"{prefix}-images-idx3-ubyte", imgs)
        write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", labels)


def test_every_prepared_split_is_shuffled_with_the_seed(tmp_path):
    _ordered_mnist(tmp_path)
    p = DatasetParams(name="mnist", root=str(tmp_path))
    train, test = load_dataset(p, seed=0)
    for split, n in ((train, 200), (test, 100)):
        index = split.images[:, 0, 0, 0].astype(int) + 256 * split.images[:, 0, 0, 1].astype(int)
        assert sorted(index.tolist()) == list(range(n))  # every image once
        assert np.array_equal(split.labels, index // (n // 10))  # labels travel with images
        # halves and tenths (floor halves, IS splits) hold every class
        for chunk in np.array_split(split.labels, 2) + np.array_split(split.labels, 5):
            assert len(np.unique(chunk)) >= 8
    again, _ = load_dataset(p, seed=0)
    other, _ = load_dataset(p, seed=1)
    assert np.array_equal(again.images, train.images)
    assert not np.array_equal(other.images, train.images)
