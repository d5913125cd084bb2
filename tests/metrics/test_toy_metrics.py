"""Toy point-cloud metrics against closed forms and brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from qac.errors import QACError
from qac.metrics.toy import MAX_W2_POINTS, data_floor, energy_distance, mmd_rbf, toy_report, w2_exact


def _gauss(n, seed, shift=0.0):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed)) + shift


def test_energy_distance_point_masses_closed_form():
    a = torch.tensor([[1.0, 2.0]]).repeat(5, 1)
    b = torch.tensor([[4.0, 6.0]]).repeat(7, 1)
    assert energy_distance(a, b) == pytest.approx(2 * 5.0)  # 2‖a − b‖, within terms are 0
    assert energy_distance(torch.zeros(3, 1), torch.full((4, 1), -2.5)) == pytest.approx(5.0)


def test_energy_distance_unbiased_for_same_distribution():
    values = [energy_distance(_gauss(200, 2 * s), _gauss(200, 2 * s + 1)) for s in range(20)]
    mean, se = np.mean(values), np.std(values) / math.sqrt(len(values))
    assert abs(mean) < 3 * se + 1e-4
    assert energy_distance(_gauss(200, 0), _gauss(200, 1, 1.0)) > 10 * np.std(values)


def test_energy_distance_matches_definition():
    a, b = _gauss(6, 3).double(), _gauss(4, 4, 0.5).double()
    d = lambda x, y: float((x - y).norm())
    cross = np.mean([d(x, y) for x in a for y in b])
    within = lambda s: np.mean([d(s[i], s[j]) for i in range(len(s)) for j in range(len(s)) if i != j])
    assert energy_distance(a, b) == pytest.approx(2 * cross - within(a) - within(b), rel=1e-12)


def test_w2_matches_permutation_brute_force():
    for seed in range(3):
        a, b = _gauss(6, 10 + seed).double(), _gauss(6, 20 + seed, 0.7).double()
        cost = torch.cdist(a, b) ** 2
        best = min(float(cost[range(6), list(p)].mean()) for p in itertools.permutations(range(6)))
        assert w2_exact(a, b) == pytest.approx(math.sqrt(best), rel=1e-12)


def test_w2_translation_and_limits():
    a = _gauss(50, 5)
    assert w2_exact(a, a + torch.tensor([3.0, 4.0])) == pytest.approx(5.0, rel=1e-6)
    with pytest.raises(QACError, match="equal-size"):
        w2_exact(a, a[:40])
    big = torch.zeros(MAX_W2_POINTS + 1, 2)
    with pytest.raises(QACError, match="limited"):
        w2_exact(big, big)


def test_mmd_unbiased_and_matches_definition():
    a, b = _gauss(5, 6).double(), _gauss(5, 7, 1.0).double()
    h = 0.8
    k = lambda x, y: math.exp(-float((x - y).norm()) ** 2 / (2 * h * h))
    off = lambda s: np.mean([k(s[i], s[j]) for i in range(5) for j in range(5) if i != j])
    cross = np.mean([k(x, y) for x in a for y in b])
    assert mmd_rbf(a, b, h) == pytest.approx(off(a) + off(b) - 2 * cross, rel=1e-12)
    same = [mmd_rbf(_gauss(100, 2 * s), _gauss(100, 2 * s + 1)) for s in range(15)]
    assert abs(np.mean(same)) < 3 * np.std(same) / math.sqrt(15) + 1e-5


def test_floor_and_report():
    ref = _gauss(600, 8)
    floor = data_floor("energy_distance", ref, seed=0)
    assert abs(floor) < 0.05
    rep = toy_report(_gauss(300, 9, 1.0), ref, seed=0)
    assert rep["n"] == 300
    for name in ("energy_distance", "w2", "mmd"):
        assert rep[name] > rep[f"{name}_floor"] + 0.05
    assert rep["energy_distance_floor"] == pytest.approx(floor)
    with pytest.raises(QACError, match="unknown toy metric"):
        toy_report(ref, ref, metrics=("fid",))
