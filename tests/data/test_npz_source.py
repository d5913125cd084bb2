"""npz/npy arrays: round trips for (N,H,W) and (N,H,W,C), points, and the error cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qac.data import open_dataset
from qac.errors import QACError


def test_npz_gray_round_trip(tmp_path):
    x = np.random.RandomState(0).randint(0, 256, (6, 5, 5), dtype=np.uint8)
    y = np.array([0, 1, 2, 0, 1, 2])
    np.savez(tmp_path / "g.npz", x=x, y=y)
    ds = open_dataset(tmp_path / "g.npz")  # a Path works as well as a str
    assert ds.name == "g" and tuple(ds.data.shape) == (6, 1, 5, 5)
    assert np.array_equal(ds.data[:, 0].numpy(), x) and ds.labels.tolist() == y.tolist()


@pytest.mark.parametrize("key", ["x", "images", "arr_0"])
def test_npz_rgb_round_trip(tmp_path, key):
    x = np.random.RandomState(1).randint(0, 256, (3, 4, 4, 3), dtype=np.uint8)
    np.savez(tmp_path / "c.npz", **{key: x, "labels": np.array([7, 8, 9])})
    ds = open_dataset(str(tmp_path / "c.npz"))
    assert tuple(ds.data.shape) == (3, 3, 4, 4)
    assert np.array_equal(ds.data.permute(0, 2, 3, 1).numpy(), x) and ds.labels.tolist() == [7, 8, 9]


def test_npy_and_points_and_resolution(tmp_path):
    x = np.random.RandomState(2).randint(0, 256, (2, 8, 8, 1), dtype=np.uint8)
    np.save(tmp_path / "a.npy", x)
    ds = open_dataset(str(tmp_path / "a.npy"), resolution=4)
    assert tuple(ds.data.shape) == (2, 1, 4, 4) and ds.labels is None
    pts = np.random.RandomState(3).randn(10, 2)
    np.savez(tmp_path / "p.npz", x=pts)
    pds = open_dataset(str(tmp_path / "p.npz"), max_items=4)
    assert pds.kind == "points" and pds.data.dtype == torch.float32 and pds.data.shape == (4, 2)


@pytest.mark.parametrize("case,match", [
    ("float_images", "float64; need uint8"),
    ("two_channels", r"\(3, 4, 4, 2\)"),
    ("bad_rank", r"\(3, 4\)"),
    ("no_key", "expected one of the keys"),
    ("bad_labels", "labels"),
    ("non_square", "not square"),
    ("corrupt", "cannot read"),
])
def test_npz_errors_name_the_file(tmp_path, case, match):
    path = tmp_path / "bad_file.npz"
    if case == "float_images":
        np.savez(path, x=np.zeros((3, 4, 4)))
    elif case == "two_channels":
        np.savez(path, x=np.zeros((3, 4, 4, 2), np.uint8))
    elif case == "bad_rank":
        np.savez(path, x=np.zeros((3, 4), np.uint8))
    elif case == "no_key":
        np.savez(path, pixels=np.zeros((3, 4, 4), np.uint8))
    elif case == "bad_labels":
        np.savez(path, x=np.zeros((3, 4, 4), np.uint8), y=np.zeros(2, np.int64))
    elif case == "non_square":
        np.savez(path, x=np.zeros((3, 4, 5), np.uint8))
    else:
        path.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(QACError, match=match) as info:
        open_dataset(str(path))
    assert "bad_file.npz" in str(info.value) and "\n" not in str(info.value)
