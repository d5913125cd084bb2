"""Toy 2-D sets: determinism per seed and the geometry each definition promises."""

from __future__ import annotations

import math

import pytest
import torch

from qac.data import TOY_DATASETS, open_dataset, sample_toy
from qac.errors import QACError
from qac.util import seed_generator

N = 8000


def _binomial_ok(counts: torch.Tensor, n: int, k: int) -> bool:
    """All k category counts within 5 binomial std of n/k."""
    p = 1.0 / k
    return bool(((counts.double() - n * p).abs() < 5 * math.sqrt(n * p * (1 - p))).all())


@pytest.mark.parametrize("name", sorted(TOY_DATASETS))
def test_toy_deterministic_per_seed_and_matches_sample_toy(name):
    a = open_dataset(f"toy:{name}:500", seed=3)
    b = open_dataset(f"toy:{name}:500", seed=3)
    c = open_dataset(f"toy:{name}:500", seed=4)
    assert a.kind == "points" and a.data.dtype == torch.float32 and a.data.shape == (500, 2)
    assert torch.equal(a.data, b.data) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.data, c.data)
    x, k = sample_toy(name, 500, seed_generator(3), return_labels=True)
    assert torch.equal(x, a.data) and torch.equal(k, a.labels)
    # an advanced generator gives fresh points
    g = seed_generator(3)
    first, second = sample_toy(name, 500, g), sample_toy(name, 500, g)
    assert not torch.equal(first, second)
    # roughly unit-to-few std, centred-ish
    std = a.data.std(0)
    assert bool((std > 0.7).all() and (std < 3.5).all()), std
    assert bool((a.data.abs() < 6).all())


def test_default_size_aliases_and_max_items():
    assert len(open_dataset("toy:moons")) == 20000
    assert torch.equal(open_dataset("toy:8gauss:50").data, open_dataset("toy:8gaussians:50").data)
    assert len(open_dataset("toy:rings:300", max_items=120)) == 120
    assert open_dataset("toy:checker:10").name == "toy:checkerboard"


def test_eight_gaussians_clusters():
    x, k = sample_toy("8gaussians", N, seed_generator(0), return_labels=True)
    angles = 2 * math.pi * torch.arange(8) / 8
    centers = 4 * torch.stack([angles.cos(), angles.sin()], 1)
    nearest = torch.cdist(x, centers).argmin(1)
    assert torch.equal(nearest, k)  # clusters 5 std apart: no point lands nearer another centre
    assert _binomial_ok(torch.bincount(nearest, minlength=8), N, 8)
    resid = x - centers[k]
    assert resid.std(0).sub(0.3).abs().max() < 0.015
    assert resid.mean(0).abs().max() < 0.02


def test_rings_radii():
    x, j = sample_toy("rings", N, seed_generator(1), return_labels=True)
    r = x.norm(dim=1)
    assert _binomial_ok(torch.bincount(j, minlength=4), N, 4)
    for ring in range(4):
        rr = r[j == ring]
        assert abs(rr.mean().item() - (ring + 1)) < 0.01
        assert abs(rr.std().item() - 0.08) < 0.01
    assert torch.equal(torch.bucketize(r, torch.tensor([1.5, 2.5, 3.5])), j)


def test_checkerboard_cells():
    x, label = sample_toy("checkerboard", N, seed_generator(2), return_labels=True)
    assert bool((x >= -4).all() and (x < 4).all())
    cell = torch.floor(x / 2).long()  # cell coordinates in {-2, -1, 0, 1}^2
    assert bool(((cell[:, 0] + cell[:, 1]) % 2 == 0).all())  # only the "black" squares
    flat = (cell[:, 0] + 2) * 4 + (cell[:, 1] + 2)
    counts = torch.bincount(flat, minlength=16)
    assert int((counts > 0).sum()) == 8
    assert _binomial_ok(counts[counts > 0], N, 8)
    assert int(torch.unique(label).numel()) == 8
    frac = x / 2 - cell  # uniform inside each cell
    assert frac.mean(0).sub(0.5).abs().max() < 0.02


def test_moons_geometry():
    x, moon = sample_toy("moons", N, seed_generator(3), return_labels=True)
    raw = x / 2 + torch.tensor([0.5, 0.25])
    r_upper = raw[moon == 0].norm(dim=1)
    r_lower = (raw[moon == 1] - torch.tensor([1.0, 0.5])).norm(dim=1)
    for r in (r_upper, r_lower):
        assert abs(r.mean().item() - 1.0) < 0.02  # E|r| = 1 + sigma^2/2 for sigma = 0.1
    assert raw[moon == 0, 1].mean() > 0.5 and raw[moon == 1, 1].mean() < 0.0
    assert x.mean(0).abs().max() < 0.05


def test_spirals_geometry():
    x, arm = sample_toy("spirals", N, seed_generator(4), return_labels=True)
    r = x.norm(dim=1)
    assert abs(r.mean().item() - 8 / 3) < 0.05  # r = 4 sqrt(u): E r = 8/3
    phi = torch.remainder(torch.atan2(x[:, 1], x[:, 0]) - math.pi * arm, 2 * math.pi)
    pred = torch.stack([4 * (phi + 2 * math.pi * t) / (3 * math.pi) for t in (0, 1)], 1)
    resid = (pred - r[:, None]).abs().min(1).values
    far = r > 1.0
    assert (resid[far] < 0.5).float().mean() > 0.99


def test_toy_errors():
    with pytest.raises(QACError, match="valid: 8gaussians, checkerboard, moons, rings, spirals"):
        open_dataset("toy:swissroll")
    with pytest.raises(QACError, match="toy:moons:0"):
        open_dataset("toy:moons:0")
    with pytest.raises(QACError, match="toy:moons:1:2"):
        open_dataset("toy:moons:1:2")
    with pytest.raises(QACError, match="resolution"):
        open_dataset("toy:moons", resolution=8)
    with pytest.raises(QACError, match="max_items"):
        open_dataset("toy:moons", max_items=0)
