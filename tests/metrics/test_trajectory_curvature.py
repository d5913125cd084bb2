"""RNE curvature: zero for straight constant-speed paths, hand-computed value for a bent one."""

from __future__ import annotations

import pytest
import torch

from qac.errors import QACError
from qac.metrics.trajectory import curvature, curvature_sigma, sigma_to_rf


def test_straight_trajectory_has_zero_curvature_on_any_grid():
    g = torch.Generator().manual_seed(0)
    start, end = (torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64) for _ in range(2))
    t = torch.tensor([0.0, 0.05, 0.3, 0.31, 0.9, 1.0], dtype=torch.float64)
    traj = start + t.reshape(-1, 1, 1, 1, 1) * (end - start)
    assert curvature(traj, t, reduction="none").abs().max() < 1e-24


def test_hand_computed_bent_path():
    traj = torch.tensor([[[0.0, 0.0]], [[1.0, 1.0]], [[2.0, 0.0]]])
    # chord (2, 0); step velocities (2, 2), (2, -2): squared deviation per dim (0 + 4)/2 = 2 each step
    assert float(curvature(traj, torch.tensor([0.0, 0.5, 1.0]))) == pytest.approx(2.0)
    # non-uniform grid: velocities (1/0.25, 1/0.25)=(4,4) and (1/0.75, -1/0.75); weights 0.25, 0.75
    expected = 0.25 * ((4 - 2) ** 2 + 4 ** 2) / 2 + 0.75 * ((4 / 3 - 2) ** 2 + (4 / 3) ** 2) / 2
    assert float(curvature(traj, torch.tensor([0.0, 0.25, 1.0]))) == pytest.approx(expected)


def test_rne_uniform_grid_formula_and_affine_invariance():
    g = torch.Generator().manual_seed(1)
    traj = torch.randn(9, 7, 2, generator=g, dtype=torch.float64).cumsum(0)
    k = 8
    rne = torch.stack([((k * (traj[i] - traj[i - 1]) - (traj[-1] - traj[0])) ** 2).mean()
                       for i in range(1, k + 1)]).mean()
    t = torch.linspace(0, 1, k + 1, dtype=torch.float64)
    assert float(curvature(traj, t)) == pytest.approx(float(rne), rel=1e-12)
    # affine time changes (scale, shift, reversal) do not change it
    assert float(curvature(traj, 3.0 * t + 2.0)) == pytest.approx(float(rne), rel=1e-12)
    assert float(curvature(traj.flip(0), t)) == pytest.approx(float(rne), rel=1e-12)
    assert float(curvature(traj, t)) > 0


def test_edm_sigma_trajectories_map_to_straight_rf_lines():
    g = torch.Generator().manual_seed(2)
    x0, n = (torch.randn(5, 4, generator=g, dtype=torch.float64) for _ in range(2))
    sig = torch.tensor([80.0, 20.0, 3.0, 0.5, 0.002, 0.0], dtype=torch.float64)
    traj = x0 + sig[:, None, None] * n  # exact ODE path for delta data at x0
    x_t, t = sigma_to_rf(traj, sig)
    torch.testing.assert_close(x_t, (1 - t)[:, None, None] * x0 + t[:, None, None] * n)
    assert float(curvature_sigma(traj, sig)) < 1e-20
    bent = traj.clone()
    bent[2] += 1.0
    assert float(curvature_sigma(bent, sig)) > 1e-3


def test_bad_inputs():
    with pytest.raises(QACError, match="monotone"):
        curvature(torch.zeros(3, 1, 2), torch.tensor([0.0, 0.0, 1.0]))
    with pytest.raises(QACError, match="do not match"):
        curvature(torch.zeros(3, 1, 2), torch.tensor([0.0, 1.0]))
    with pytest.raises(QACError):
        sigma_to_rf(torch.zeros(2, 1), torch.tensor([-1.0, 0.0]))
