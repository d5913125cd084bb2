"""Schedules against the reference test vectors (docs/design.md §4) and input checks."""

from __future__ import annotations

import pytest
import torch

from qac.errors import QACError
from qac.sampling import make_sigmas

# (name, rho, N timestamps) -> reference values for sigma_max = 80, sigma_min = 0.002
VECTORS = [
    ("polynomial", 7.0, [80, 9.7232, 0.4700, 0.002]),
    ("logsnr", None, [80, 2.3392, 0.0684, 0.002]),
    ("time_uniform", 2.0, [80, 2.3043, 0.3843, 0.002]),
    ("polynomial", 7.0, [80, 24.4083, 5.8389, 0.9654, 0.0851, 0.002]),
    ("logsnr", None, [80, 9.609, 1.1542, 0.1386, 0.0167, 0.002]),
    ("time_uniform", 2.0, [80, 6.2923, 1.56, 0.556, 0.1503, 0.002]),
    ("polynomial", 7.0, [80, 45.314, 24.408, 12.382, 5.839, 2.515, 0.9654, 0.3183, 0.0851, 0.0167, 0.002]),
    ("time_uniform", 2.0, [80, 18.428, 6.292, 2.864, 1.560, 0.926, 0.556, 0.314, 0.150, 0.0481, 0.002]),
]


@pytest.mark.parametrize("name,rho,expected", VECTORS)
def test_reference_vectors(name, rho, expected):
    got = make_sigmas(name, len(expected) - 1, rho=rho)
    assert got.dtype == torch.float64
    assert torch.allclose(got, torch.tensor(expected, dtype=torch.float64), rtol=2e-3, atol=1e-4)
    assert got[0].item() == 80.0 and got[-1].item() == 0.002


def test_final_zero_keeps_steps_and_edm_grid():
    s = make_sigmas("polynomial", 18, final_zero=True)
    assert len(s) == 19 and s[-1].item() == 0.0 and s[-2].item() == 0.002
    assert abs(s[1].item() - 57.586) < 1e-3  # EDM's N = 18 grid


def test_time_uniform_rho1_is_uniform_in_vp_time():
    from qac.sampling.solvers.adams import vp_time

    t = vp_time(make_sigmas("time_uniform", 8, rho=1.0).numpy())
    assert abs(t[0] - 1.0) < 1e-9 and abs(t[-1] - 1e-3) < 1e-9
    diffs = t[1:] - t[:-1]
    assert max(abs(diffs - diffs.mean())) < 1e-9


def test_custom_list_and_strictly_decreasing():
    s = make_sigmas([10.0, 1.0, 0.1], final_zero=True)
    assert s.tolist() == [10.0, 1.0, 0.1, 0.0]
    for n in (1, 2, 5, 40):
        for name in ("polynomial", "logsnr", "time_uniform"):
            g = make_sigmas(name, n)
            assert len(g) == n + 1 and bool((g[1:] < g[:-1]).all())


@pytest.mark.parametrize("kwargs", [
    dict(schedule="polynomial", steps=0),
    dict(schedule="polynomial", steps=2.5),
    dict(schedule="polynomial", steps=3, sigma_min=80.0, sigma_max=1.0),
    dict(schedule="polynomial", steps=3, sigma_min=0.0),
    dict(schedule="polynomial", steps=3, rho=-1.0),
    dict(schedule="nope", steps=3),
    dict(schedule="custom", steps=3),
    dict(schedule=[1.0, 2.0, 0.5]),
    dict(schedule=[1.0, 1.0]),
    dict(schedule=[1.0]),
    dict(schedule=[1.0, 0.0, -1.0]),
    dict(schedule=[3.0, 2.0, 1.0], steps=5),
])
def test_bad_input_raises_qacerror(kwargs):
    with pytest.raises(QACError):
        make_sigmas(**kwargs)
