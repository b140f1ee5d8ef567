import numpy as np
import pytest

from ganlab.metrics.conditional import (
    conditional_accuracy,
    cycle_l1,
    label_preservation,
    per_class_accuracy,
    per_class_fid,
)
from ganlab.metrics.fid import fid


def test_conditional_accuracy_from_probs_and_labels():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    assert conditional_accuracy(probs, np.array([0, 1, 1, 1])) == 0.75
    assert conditional_accuracy(np.array([0, 1, 0, 1]), np.array([0, 1, 1, 1])) == 0.75
    assert per_class_accuracy(probs, np.array([0, 1, 1, 1]), 3)[:2] == [1.0, 2 / 3]
    with pytest.raises(ValueError):
        conditional_accuracy(probs, np.array([0, 1]))


def test_label_preservation_is_accuracy_against_the_source_labels():
    probs = np.eye(10)[[3, 3, 5, 7]]
    assert label_preservation(probs, np.array([3, 4, 5, 7])) == 0.75


def test_per_class_fid_is_fid_within_each_class_at_one_n():
    rng = np.random.default_rng(0)
    gen = rng.normal(size=(60, 4))
    gen_labels = np.repeat([0, 1, 2], 20)
    ref = rng.normal(size=(90, 4)) + np.repeat([0.0, 1.0, 3.0], 30)[:, None]
    ref_labels = np.repeat([0, 1, 2], 30)
    out = per_class_fid(gen, gen_labels, ref, ref_labels, 3, n_per_class=15)
    for c in range(3):
        assert out[c] == pytest.approx(fid(gen[gen_labels == c][:15], ref[ref_labels == c]))
    assert out[0] < out[1] < out[2]  # the reference moves away from the generated class
    with pytest.raises(ValueError):
        per_class_fid(gen, gen_labels, ref, ref_labels, 3, n_per_class=21)


def test_cycle_l1_is_the_mean_absolute_pixel_error():
    a = np.zeros((2, 1, 2, 2))
    b = a.copy()
    b[0, 0, 0, 0] = 1.0
    b[1, 0, 1, 1] = -0.5
    assert cycle_l1(a, a) == 0.0
    assert cycle_l1(a, b) == pytest.approx(1.5 / 8)
