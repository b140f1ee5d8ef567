import numpy as np
import pytest
import torch

from ganlab.metrics.features import (
    Extractor,
    InceptionExtractor,
    cached_features,
    extract,
    feature_cache_key,
)

torchvision = pytest.importorskip("torchvision")


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "inc.pt"
    model = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture
def one_thread():
    # Inception convolutions on a busy 2-core machine are ~10x slower with two
    # intra-op threads than with one (thread oversubscription); pin the test to
    # one thread so its runtime does not depend on what else is running.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_inception_extractor_shapes_and_probabilities(weights_file, one_thread):
    # batch_size=1 on two images exercises the internal batching loop.
    ext = InceptionExtractor.from_weights_file(weights_file, batch_size=1)
    assert isinstance(ext, Extractor)
    images = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    feats, probs = ext(images)
    assert feats.shape == (2, 2048) and probs.shape == (2, 1000)
    assert feats.dtype == np.float64 and np.all(np.isfinite(feats))
    # Untrained Inception activations are tiny (~1e-8), so compare relatively:
    # each image must get its own features (the hook is not returning stale ones).
    assert np.linalg.norm(feats[0] - feats[1]) > 1e-3 * np.linalg.norm(feats[0])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)


def test_missing_weights_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        InceptionExtractor.from_weights_file(missing)


def test_mismatched_weights_file_names_the_path(tmp_path):
    bad = tmp_path / "wrong.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), bad)
    with pytest.raises(ValueError, match="wrong.pt"):
        InceptionExtractor.from_weights_file(bad)


class _CountingExtractor:
    name = "toy"

    def __init__(self):
        self.calls = 0

    def __call__(self, images):
        self.calls += 1
        flat = images.flatten(1)
        return flat[:, :4], torch.softmax(flat[:, :3], dim=1)


def test_extract_accepts_any_protocol_object_and_batches():
    ext = _CountingExtractor()
    feats, probs = extract(ext, np.zeros((10, 1, 2, 2), dtype=np.float32), batch_size=4)
    assert ext.calls == 3
    assert feats.shape == (10, 4) and probs.shape == (10, 3)
    assert feats.dtype == np.float64


def test_feature_cache_computes_once_and_key_tracks_content(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, size=(5, 1, 4, 4)).astype(np.float32)
    ext = _CountingExtractor()
    key = feature_cache_key(images, ext.name)

    def compute():
        return extract(ext, images)

    first = cached_features(tmp_path, key, compute)
    second = cached_features(tmp_path, key, compute)
    assert ext.calls == 1
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert [p.name for p in tmp_path.iterdir()] == [f"{key}.npz"]  # no temp leftovers

    changed = images.copy()
    changed[0, 0, 0, 0] += 0.5
    assert feature_cache_key(changed, ext.name) != key
    assert feature_cache_key(images, "other") != key
    assert feature_cache_key(images.reshape(5, 16), ext.name) != key
    assert feature_cache_key(images.astype(np.float64), ext.name) != key
    assert feature_cache_key(images.copy(), ext.name) == key
