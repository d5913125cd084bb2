"""ArrayDataset: float mapping, describe(), validation; xflip augmentation."""

from __future__ import annotations

import json

import pytest
import torch

from qac.data import ArrayDataset, open_dataset, xflip
from qac.util import seed_generator


def test_as_float_maps_0_to_minus1_and_255_to_1():
    data = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    ds = ArrayDataset(data, None, "image", "ramp")
    f = ds.as_float()
    assert f.dtype == torch.float32 and f.min().item() == -1.0 and f.max().item() == 1.0
    assert torch.allclose(f.flatten(), torch.arange(256, dtype=torch.float32) / 127.5 - 1)
    assert torch.equal(ds.as_float(torch.tensor([0])), f[:1])
    pts = open_dataset("toy:moons:10")
    assert torch.equal(pts.as_float(), pts.data) and pts.resolution is None and pts.shape == (2,)


def test_describe_is_json_ready():
    d = open_dataset("digits", max_items=30).describe()
    json.dumps(d)
    assert d["name"] == "digits" and d["kind"] == "image" and d["num_items"] == 30
    assert d["item_shape"] == [1, 8, 8] and d["labeled"] and d["num_classes"] <= 10


def test_validation_rejects_wrong_layouts():
    with pytest.raises(ValueError):
        ArrayDataset(torch.zeros(2, 2, 4, 4, dtype=torch.uint8), None, "image", "x")
    with pytest.raises(ValueError):
        ArrayDataset(torch.zeros(2, 1, 4, 4), None, "image", "x")
    with pytest.raises(ValueError):
        ArrayDataset(torch.zeros(3, 2), torch.zeros(2, dtype=torch.int64), "points", "x")


def test_xflip_per_sample_and_seeded():
    x = torch.randn(1000, 2, 3, 5)
    out = xflip(x, seed_generator(0))
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert bool((flipped ^ kept).all())
    assert 0.45 < flipped.float().mean().item() < 0.55
    assert torch.equal(out, xflip(x, seed_generator(0)))
    assert not torch.equal(out, xflip(x, seed_generator(1)))
    u8 = torch.randint(0, 256, (4, 1, 2, 2), dtype=torch.uint8)
    assert xflip(u8, seed_generator(0), p=1.0).equal(u8.flip(-1))
