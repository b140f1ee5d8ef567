import numpy as np
import pytest

from ganlab.metrics.classes import class_histogram
from ganlab.metrics.memorisation import memorisation


def test_uniform_labels_cover_all_classes_with_zero_kl():
    labels = np.repeat(np.arange(10), 50)
    out = class_histogram(np.eye(10)[labels], 10, reference_counts=np.full(10, 7))
    assert out["classes_covered"] == 10
    assert out["kl_uniform"] == pytest.approx(0.0, abs=1e-12)
    assert out["kl_reference"] == pytest.approx(0.0, abs=1e-12)
    assert out["entropy"] == pytest.approx(np.log(10))
    assert out["counts"] == [50] * 10


def test_mode_collapse_and_threshold_rule():
    # 990 samples of class 0, 10 samples of class 1, none of the others.
    labels = np.array([0] * 990 + [1] * 10)
    out = class_histogram(labels, 10)
    # Uniform share is 100; class 1 has 10 >= 0.1 * 100, so it is covered.
    assert out["classes_covered"] == 2
    assert class_histogram(labels, 10, cover_threshold=0.2)["classes_covered"] == 1
    p = np.array([0.99, 0.01])
    assert out["kl_uniform"] == pytest.approx(np.sum(p * np.log(p * 10)))
    assert "kl_reference" not in out


def test_kl_reference_infinite_when_reference_lacks_a_class():
    out = class_histogram(np.array([0, 1, 2]), 3, reference_counts=np.array([1, 1, 0]))
    assert out["kl_reference"] == float("inf")


def test_class_histogram_validates_labels():
    with pytest.raises(ValueError):
        class_histogram(np.array([0, 5]), 3)


def _images(rng, n):
    # 8x8 "images" in [-1, 1] from one fixed distribution.
    return np.tanh(rng.normal(size=(n, 1, 8, 8)))


def test_copier_is_flagged_and_fresh_samples_are_not():
    rng = np.random.default_rng(0)
    train, heldout = _images(rng, 500), _images(rng, 500)
    copier = train[rng.choice(500, size=300, replace=False)]
    fresh = _images(rng, 300)

    copied = memorisation(copier, train, heldout)
    honest = memorisation(fresh, train, heldout)
    assert copied["mem_flagged"] == 1.0
    assert copied["mem_frac_copies"] > 0.95
    assert copied["mem_ratio_median"] < 0.1
    assert honest["mem_flagged"] == 0.0
    assert honest["mem_frac_copies"] < 0.05
    assert honest["mem_ratio_median"] == pytest.approx(1.0, abs=0.15)


def test_train_is_subsampled_to_heldout_size_reproducibly():
    rng = np.random.default_rng(1)
    train, heldout = _images(rng, 2000), _images(rng, 200)
    fresh = _images(rng, 100)
    a = memorisation(fresh, train, heldout, seed=3)
    b = memorisation(fresh, train, heldout, seed=3)
    assert a == b
    # Size-matched, an honest generator sits near ratio 1; searching the full
    # 10x larger train set biases d_tr (and the ratio) downwards.
    full = memorisation(fresh, train, heldout, match_sizes=False)
    assert full["mem_ratio_median"] < a["mem_ratio_median"]
    assert a["mem_ratio_median"] == pytest.approx(1.0, abs=0.15)
