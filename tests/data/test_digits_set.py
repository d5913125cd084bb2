"""scikit-learn digits: shapes, value mapping, labels, the 16x16 upsampling."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from qac.data import open_dataset


def test_digits_values_and_labels():
    ds = open_dataset("digits")
    ref = load_digits()
    assert ds.kind == "image" and ds.data.dtype == torch.uint8
    assert tuple(ds.data.shape) == (1797, 1, 8, 8) and ds.resolution == 8 and ds.num_channels == 1
    expected = np.rint(ref.images * 255 / 16).astype(np.uint8)
    assert np.array_equal(ds.data[:, 0].numpy(), expected)
    assert int(ds.data.max()) == 255 and int(ds.data.min()) == 0
    assert ds.labels.dtype == torch.int64 and np.array_equal(ds.labels.numpy(), ref.target)
    assert ds.num_classes == 10


def test_digits16_is_bilinear_upsampling():
    small, big = open_dataset("digits"), open_dataset("digits16")
    assert tuple(big.data.shape) == (1797, 1, 16, 16) and big.name == "digits16"
    ref = F.interpolate(small.data.float(), scale_factor=2, mode="bilinear", align_corners=False)
    assert (big.data.float() - ref.round()).abs().max() <= 1
    assert torch.equal(big.labels, small.labels)


def test_digits_subset_and_resolution():
    full = open_dataset("digits")
    sub = open_dataset("digits", max_items=50, seed=7)
    again = open_dataset("digits", max_items=50, seed=7)
    assert len(sub) == 50 and torch.equal(sub.data, again.data)
    # every subset row is a row of the full set with the same label
    match = (sub.data.reshape(50, 1, -1) == full.data.reshape(1, 1797, -1)).all(-1)
    idx = match.float().argmax(1)
    assert bool(match.any(1).all()) and torch.equal(full.labels[idx], sub.labels)
    assert tuple(open_dataset("digits", resolution=4, max_items=5).data.shape) == (5, 1, 4, 4)
