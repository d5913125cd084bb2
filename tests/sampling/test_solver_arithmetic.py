"""The fused state arithmetic the solvers share: :func:`combine` and the Dormand–Prince step built on it."""

from __future__ import annotations

import math

import pytest
import torch

from qac.sampling.solvers._common import combine
from qac.sampling.solvers.adaptive import DopriCounts, dopri5_interval, torch_max_abs


def _terms(n: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(3, 4, 5, generator=g, dtype=torch.float64) for _ in range(n)]


@pytest.mark.parametrize("with_base", [True, False])
def test_combine_is_the_linear_combination_in_a_fresh_tensor(with_base: bool) -> None:
    base, *terms = _terms(5)
    coeffs = [0.7, -1.25, 0.0, 3.0]
    before = [t.clone() for t in [base, *terms]]
    out = combine(base if with_base else None, coeffs, terms)
    expected = sum(c * t.numpy() for c, t in zip(coeffs, terms)) + (base.numpy() if with_base else 0.0)
    assert torch.allclose(out, torch.from_numpy(expected), rtol=1e-15, atol=1e-15)
    out.fill_(0.0)  # writing to the result touches no input
    assert all(torch.equal(a, b) for a, b in zip(before, [base, *terms]))


def test_combine_skips_zero_coefficients_and_needs_one() -> None:
    base, t = _terms(2)
    nan = torch.full_like(t, math.nan)
    assert torch.equal(combine(base, [0.0, 2.0], [nan, t]), base + 2.0 * t)  # 0 * nan never formed
    with pytest.raises(ValueError, match="nonzero"):
        combine(base, [0.0], [t])


def test_max_abs_is_a_fresh_elementwise_max() -> None:
    a, b = _terms(2)
    out = torch_max_abs(a, b)
    assert torch.equal(out, torch.maximum(a.abs(), b.abs()))
    assert out.data_ptr() not in (a.data_ptr(), b.data_ptr())


def test_dopri5_step_is_its_stability_polynomial_on_a_linear_ode() -> None:
    """One accepted Dormand–Prince 5 step of ``dx/du = lam x`` multiplies ``x`` by
    ``R(z) = sum_{k<=5} z^k/k! + z^6/600``, ``z = lam h`` (the fused stage sums are exact up to rounding)."""
    lam, h = -1.3, 0.4
    x0 = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    counts = DopriCounts()
    x, f, _ = dopri5_interval(lambda x, u, end: lam * x, x0, lam * x0, 0.0, h, h, rtol=1.0, atol=1.0,
                              counts=counts)
    z = lam * h
    r = sum(z**k / math.factorial(k) for k in range(6)) + z**6 / 600
    assert (counts.accepted, counts.rejected, counts.nfe) == (1, 0, 6)
    assert torch.allclose(x, r * x0, rtol=1e-15, atol=0)
    assert torch.allclose(f, lam * x, rtol=1e-15, atol=0)  # first-same-as-last slope
