"""Coefficients checked against independent exact integrals: a wrong weight fails here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from qac.sampling import make_sigmas, sample
from qac.sampling.solvers.adams import AB_COEFFS, adams_coefficients, vp_time

GRID = make_sigmas("polynomial", 9).tolist()


def _polyfit_integral(nodes, values, a, b):
    """Independent route: fit the interpolating polynomial with numpy and integrate it."""
    coef = np.polyfit(nodes, values, len(nodes) - 1)
    anti = np.polyint(coef)
    return np.polyval(anti, b) - np.polyval(anti, a)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_ipndm_v_integrates_polynomials_of_its_degree_exactly(order):
    grid = [1.0, 0.8, 0.5, 0.45, 0.2, 0.1, 0.05]  # strongly non-uniform
    table = adams_coefficients("ipndm_v", grid, max_order=order)
    rng = np.random.default_rng(order)
    for i, c in enumerate(table):
        q = len(c)
        nodes = [grid[i - j] for j in range(q)]
        poly = rng.normal(size=q)  # degree q - 1
        got = sum(cj * np.polyval(poly, t) for cj, t in zip(c, nodes))
        exact = np.polyval(np.polyint(poly), grid[i + 1]) - np.polyval(np.polyint(poly), grid[i])
        assert math.isclose(got, exact, rel_tol=1e-11, abs_tol=1e-13)
        assert math.isclose(got, _polyfit_integral(nodes, np.polyval(poly, nodes), grid[i], grid[i + 1]),
                            rel_tol=1e-8, abs_tol=1e-12)
        assert math.isclose(sum(c), grid[i + 1] - grid[i], rel_tol=1e-12)  # consistency


def test_ipndm_v_reduces_to_ipndm_on_uniform_grid():
    grid = [1.0 - 0.1 * i for i in range(9)]
    v, fixed = adams_coefficients("ipndm_v", grid), adams_coefficients("ipndm", grid)
    for cv, cf in zip(v, fixed):
        assert np.allclose(cv, cf, rtol=1e-10, atol=1e-13)
    assert np.allclose([c / -0.1 for c in fixed[-1]], AB_COEFFS[3])


def test_ipndm_v_differs_from_fixed_ab_on_edm_grid():
    """On the rho = 7 grid the fixed AB weights are not the variable-step ones (the reason ipndm_v exists)."""
    v, fixed = adams_coefficients("ipndm_v", GRID), adams_coefficients("ipndm", GRID)
    assert max(abs(a - b) for cv, cf in zip(v[3:], fixed[3:]) for a, b in zip(cv, cf)) > 1e-2


def test_deis_coefficients_match_adaptive_quadrature():
    table = adams_coefficients("deis", GRID, max_order=4)
    for i in (0, 3, 8):
        q = len(table[i])
        taus = [float(vp_time(GRID[i - j])) for j in range(q)]
        for j in range(q):
            def basis(sig, j=j, taus=taus, q=q):
                t = float(vp_time(sig))
                return math.prod((t - taus[k]) / (taus[j] - taus[k]) for k in range(q) if k != j)
            exact = quad(basis, GRID[i], GRID[i + 1], epsabs=1e-13, epsrel=1e-12, limit=200)[0]
            assert math.isclose(table[i][j], exact, rel_tol=1e-9, abs_tol=1e-10)


def test_deis_to_zero_is_finite_and_consistent():
    grid = make_sigmas("polynomial", 6, final_zero=True).tolist()
    for i, c in enumerate(adams_coefficients("deis", grid)):
        assert math.isclose(sum(c), grid[i + 1] - grid[i], rel_tol=1e-10)


@pytest.mark.parametrize("name,max_order", [("ipndm_v", 4), ("ipndm_v", 3), ("deis", 4)])
def test_end_to_end_on_slope_known_in_closed_form(name, max_order):
    """dx/dsigma = p(sigma) (D = x - sigma p): the solver's answer equals the sum of exact integrals."""
    poly = np.array([0.01, -0.2, 0.5, 1.0])
    den = lambda x, s: x - s * float(np.polyval(poly, float(s)))
    opts = {"interp": "sigma", "top_order_h": None, "weights": "exact"} if name == "ipndm_v" else {}
    res = sample(den, torch.ones(1, 1), solver=name, steps=9, max_order=max_order, **opts)
    table = adams_coefficients(name, GRID, max_order=max_order)
    expected = 80.0 + sum(cj * np.polyval(poly, GRID[i - j])
                          for i, c in enumerate(table) for j, cj in enumerate(c))
    assert math.isclose(res.samples.item(), expected, rel_tol=1e-12)
    if name == "ipndm_v" and max_order == 4:  # cubic slope, order-4 steps after warm-up: exact there
        warm = sum(cj * np.polyval(poly, GRID[i - j])
                   for i, c in enumerate(table[:3]) for j, cj in enumerate(c))
        anti = np.polyint(poly)
        exact_tail = np.polyval(anti, GRID[-1]) - np.polyval(anti, GRID[3])
        assert math.isclose(expected - 80.0 - warm, exact_tail, rel_tol=1e-9)


def _exp_integral(m, l0, lt):
    return quad(lambda l: math.exp(l - lt) * m(l), l0, lt, epsabs=1e-14, epsrel=1e-13)[0]


@pytest.mark.parametrize("name,degree", [("dpmpp_2m", 0), ("unipc", 0), ("dpmpp_3m", 0), ("dpmpp_3m", 2)])
def test_multistep_exact_for_polynomial_data_prediction(name, degree):
    """D depends on lambda only, a polynomial of the solver's degree: x(sigma) is an exponential integral.

    The 3M step integrates a quadratic m(lambda) exactly (the published ``- phi3 D2`` form does not); its
    warm-up steps are lower order, so the check starts from the state the warm-up produced.
    """
    coeffs = [0.2, -0.7, 0.3][: degree + 1]
    m = lambda l: sum(c * l**p for p, c in enumerate(coeffs))
    den = lambda x, s: torch.full_like(x, m(-math.log(float(s))))
    sig = [5.0, 3.0, 2.0, 1.2, 0.9]
    exact_form = {"d2_weight": "exact"} if name == "dpmpp_3m" else {}  # always third order
    res = sample(den, torch.zeros(1, 1), solver=name, schedule=sig, lower_order_final=False, **exact_form)
    lam = [-math.log(s) for s in sig]
    # x_T = 0: the answer is sigma_N * int e^lambda m(lambda), minus the warm-up error of the first steps
    exact = _exp_integral(m, lam[0], lam[-1])
    if degree == 0:
        assert math.isclose(res.samples.item(), exact, rel_tol=1e-10)
        return
    ref_warm = sample(den, torch.zeros(1, 1), solver=name, schedule=sig[: degree + 1],
                      lower_order_final=False, **exact_form)
    # after the warm-up (degree steps), the remaining steps are exact given the warm-up state
    x_w = ref_warm.samples.item()
    tail = (sig[-1] / sig[degree]) * x_w + _exp_integral(m, lam[degree], lam[-1])
    assert math.isclose(res.samples.item(), tail, rel_tol=1e-10, abs_tol=1e-12)
    assert abs(res.samples.item() - exact) > 1e-6  # the warm-up is not exact, so the test can tell


def test_dpmpp_3m_first_steps_use_lower_order():
    den = lambda x, s: torch.full_like(x, 0.3)  # constant data prediction: every order is exact
    res = sample(den, torch.ones(1, 1), solver="dpmpp_3m", steps=5)
    assert math.isclose(res.samples.item(), 0.3 + (1 * 80 - 0.3) * 0.002 / 80, rel_tol=1e-12)
