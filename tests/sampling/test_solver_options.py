"""ipndm_v's interpolation variable and top-order rule, dpmpp_3m's second-difference weight, and the
per-grid coefficient plans against independent per-step computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from qac.bench.published import ipndm_v_published_coeffs
from qac.errors import QACError
from qac.sampling import make_sigmas, sample
from qac.sampling.solvers.adams import adams_coefficients, adams_solve, interp_weights
from qac.sampling.solvers.multistep import dpmpp_plan

GRID = make_sigmas("polynomial", 9).tolist()
V = {"rho": lambda s: s ** (1 / 7), "log": math.log, "sigma": lambda s: s}


@pytest.mark.parametrize("interp", ["rho", "log", "sigma"])
@pytest.mark.parametrize("q", [1, 2, 3, 4])
def test_interp_weights_integrate_polynomials_in_their_variable(interp, q):
    """sum_j C_j p(v(sigma_j)) = int p(v(sigma)) dsigma for every polynomial p of degree q-1 (adaptive quad)."""
    rng = np.random.default_rng(q)
    v = V[interp]
    for i in (q - 1, 5, 8):
        nodes = [GRID[i - j] for j in range(q)]
        w = interp_weights(nodes, GRID[i], GRID[i + 1], interp)
        poly = rng.normal(size=q)
        got = sum(wj * np.polyval(poly, v(t)) for wj, t in zip(w, nodes))
        exact = quad(lambda s, p=poly: np.polyval(p, v(s)), GRID[i], GRID[i + 1], epsabs=1e-14, epsrel=1e-13,
                     limit=200)[0]
        assert math.isclose(got, exact, rel_tol=1e-10, abs_tol=1e-12), (i, got, exact)


@pytest.mark.parametrize("interp", ["rho", "log"])
def test_interp_weights_on_a_step_to_zero(interp):
    nodes, v = [0.5, 1.3, 2.9], V[interp]
    w = interp_weights(nodes, 0.5, 0.0, interp)
    poly = np.array([0.3, -1.0, 2.0])
    got = sum(wj * np.polyval(poly, v(t)) for wj, t in zip(w, nodes))
    exact = -quad(lambda s: np.polyval(poly, v(s)), 0.0, 0.5, epsabs=1e-14, epsrel=1e-13, limit=200)[0]
    assert math.isclose(got, exact, rel_tol=1e-9)


def test_rho_interp_is_ab_in_u_on_its_own_grid():
    """On the rho = 7 grid, u = sigma^(1/7) is uniform: the interpolant is AB's in u, integrated in sigma."""
    w = interp_weights([GRID[4], GRID[3]], GRID[4], GRID[5], "rho")
    u = [s ** (1 / 7) for s in GRID[3:6]]
    du = u[2] - u[1]
    # l_0(u) = 1 + (u - u4)/du, l_1 = -(u - u4)/du (u3 = u4 - du); dsigma = 7 u^6 du
    l1 = quad(lambda x: -(x - u[1]) / du * 7 * x**6, u[1], u[2])[0]
    assert math.isclose(w[1], l1, rel_tol=1e-12)
    assert math.isclose(sum(w), GRID[5] - GRID[4], rel_tol=1e-12)


@pytest.mark.parametrize("t,expected", [(None, [1, 2, 3, 4, 4, 4, 4, 4, 4]), (0.85, [1, 2, 3, 3, 3, 3, 3, 3, 3]),
                                        (1.3, [1, 2, 3, 4, 4, 4, 3, 3, 3])])
def test_top_order_rule_lowers_only_long_steps(t, expected):
    table = adams_coefficients("ipndm_v", GRID, interp="rho", top_order_h=t)
    assert [len(c) for c in table] == expected
    h = [math.log(GRID[i] / GRID[i + 1]) for i in range(9)]
    if t is not None:
        assert all((len(c) < 4) == (h[i] > t) for i, c in enumerate(table) if i >= 3)


def test_ipndm_v_options_reach_sample_and_bad_values_raise():
    den = lambda x, s: 0.3 * x
    a = sample(den, torch.ones(1, 2), solver="ipndm_v", steps=8, interp="log", weights="exact").samples
    b = sample(den, torch.ones(1, 2), solver="ipndm_v", steps=8, interp="sigma", weights="exact").samples
    assert not torch.allclose(a, b)
    # a user mistake (QACError: one `error:` line in the CLI), checked against the option's Literal type
    with pytest.raises(QACError, match="interp='cubic' of 'ipndm_v' must be one of sigma, rho, log"):
        sample(den, torch.ones(1, 2), solver="ipndm_v", steps=8, interp="cubic")
    with pytest.raises(QACError, match="d2_weight='half' of 'dpmpp_3m' must be one of auto, exact, phi3"):
        sample(den, torch.ones(1, 2), solver="dpmpp_3m", steps=8, d2_weight="half")


def test_published_ipndm_v_defects():
    """diff-sampler's order-3 weights integrate only linear slopes exactly, its order-4 weights are not even
    consistent (they do not sum to the step) on the rho = 7 grid. On a uniform grid order 3 is AB3, but
    order 4 is not AB4 (first weight 57/24 instead of 55/24)."""
    uniform = [1.0 - 0.1 * i for i in range(6)]
    ab = adams_coefficients("ipndm", uniform)
    assert np.allclose(ipndm_v_published_coeffs(uniform, 2, 3), ab[2], rtol=1e-12)
    assert math.isclose(ipndm_v_published_coeffs(uniform, 4, 4)[0], -0.1 * 57 / 24, rel_tol=1e-12)
    assert math.isclose(ab[4][0], -0.1 * 55 / 24, rel_tol=1e-12)
    i = 5
    c3, c4 = ipndm_v_published_coeffs(GRID, i, 3), ipndm_v_published_coeffs(GRID, i, 4)
    nodes = [GRID[i - j] for j in range(3)]
    step = GRID[i + 1] - GRID[i]
    assert math.isclose(sum(c3), step, rel_tol=1e-12)  # constants
    lin = sum(c * t for c, t in zip(c3, nodes))
    assert math.isclose(lin, (GRID[i + 1] ** 2 - GRID[i] ** 2) / 2, rel_tol=1e-10)  # linear
    quadr = sum(c * t * t for c, t in zip(c3, nodes))
    assert abs(quadr - (GRID[i + 1] ** 3 - GRID[i] ** 3) / 3) > 1e-3 * abs(GRID[i] ** 3)  # not quadratic
    assert abs(sum(c4) - step) > 1e-4 * abs(step)  # not consistent (exact weights: 1e-15)


def test_adams_solve_equals_the_slope_form():
    """The solver folds 1/sigma into the coefficients; the textbook loop on d = (x - D)/sigma agrees."""
    torch.manual_seed(0)
    den = lambda x, s: torch.tanh(x) * (1.0 / (1.0 + float(s)))
    x0 = torch.randn(3, 4, dtype=torch.float64) * 80
    sig = make_sigmas("polynomial", 9)
    table = adams_coefficients("ipndm_v", GRID, interp="rho", top_order_h=0.85)
    got = adams_solve(den, x0, sig, table)
    x, ds = x0, []
    for i, c in enumerate(table):
        ds = [(x - den(x, GRID[i])) / GRID[i]] + ds[:3]
        x = x + sum(cj * dj for cj, dj in zip(c, ds))
    assert torch.allclose(got, x, rtol=1e-13, atol=1e-12)


def _dpmpp_per_step(den, x, s, max_order, weight, top_h=None):
    """Independent per-step DPM-Solver++ (divided differences on tensors, as in the DPM-Solver++ paper)."""
    lam = [-math.log(v) for v in s]
    steps, hist = len(s) - 1, []
    for i in range(steps):
        m = den(x, s[i])
        hist = [m] + hist[:2]
        q = min(max_order, i + 1, steps - i)
        h = lam[i + 1] - lam[i]
        if top_h is not None and q == max_order and h > top_h:
            q -= 1
        phi1 = math.expm1(-h)
        x_new = (s[i + 1] / s[i]) * x - phi1 * m
        if q == 2:
            x_new = x_new - 0.5 * phi1 * (m - hist[1]) / ((lam[i] - lam[i - 1]) / h)
        elif q == 3:
            r0, r1 = (lam[i] - lam[i - 1]) / h, (lam[i - 1] - lam[i - 2]) / h
            d10, d11 = (m - hist[1]) / r0, (hist[1] - hist[2]) / r1
            d1, d2 = d10 + r0 / (r0 + r1) * (d10 - d11), (d10 - d11) / (r0 + r1)
            phi2 = phi1 / h + 1
            phi3 = phi2 / h - 0.5
            x_new = x_new + phi2 * d1 - weight * phi3 * d2
        x = x_new
    return x


@pytest.mark.parametrize("weight,top_h", [("exact", None), ("phi3", None), ("exact", 0.35), ("exact", 1.0)])
def test_dpmpp_plan_equals_per_step_formulas(weight, top_h):
    den = lambda x, s: torch.sin(x) * (1.0 / (1.0 + float(s)))
    x0 = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 80
    sig = make_sigmas("logsnr", 12)
    got = sample(den, x0 / 80, solver="dpmpp_3m", schedule="logsnr", steps=12, d2_weight=weight,
                 top_order_h=top_h).samples
    want = _dpmpp_per_step(den, x0, sig.tolist(), 3, 2.0 if weight == "exact" else 1.0, top_h)
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
    orders = [len(st.b) for st in dpmpp_plan(sig.tolist(), 3, True, weight, top_h)]
    h = math.log(80 / 0.002) / 12  # 0.88 per step
    assert orders[3] == (2 if top_h is not None and h > top_h else 3)


def _unipc_per_step(den, x, s, max_order=3, states=None):
    """Independent per-step UniPC-bh2 (linear solves with torch at every step); ``states`` collects x_i."""
    lam = [-math.log(v) for v in s]
    steps = len(s) - 1
    hist = [den(x, s[0])]
    for i in range(steps):
        if states is not None:
            states.append(x)
        m = hist[0]
        q = min(max_order, i + 1, steps - i)
        h = lam[i + 1] - lam[i]
        rks = [(lam[i - k] - lam[i]) / h for k in range(1, q)] + [1.0]
        d1s = [(hist[k] - m) / rks[k - 1] for k in range(1, q)]
        hh = -h
        bh = math.expm1(hh)
        g, fact, b = math.expm1(hh) / hh - 1.0, 1.0, []
        for p in range(1, q + 1):
            b.append(g * fact / bh)
            fact *= p + 1
            g = g / hh - 1.0 / fact
        rk = torch.tensor(rks, dtype=torch.float64)
        rmat = torch.stack([rk ** (p - 1) for p in range(1, q + 1)])
        bvec = torch.tensor(b, dtype=torch.float64)
        rho_p = [] if q == 1 else [0.5] if q == 2 else torch.linalg.solve(rmat[:-1, :-1], bvec[:-1]).tolist()
        rho_c = [0.5] if q == 1 else torch.linalg.solve(rmat, bvec).tolist()
        base = (s[i + 1] / s[i]) * x - math.expm1(-h) * m
        pred = base - bh * sum((r * d for r, d in zip(rho_p, d1s)), torch.zeros_like(x))
        if i == steps - 1:
            return pred
        mt = den(pred, s[i + 1])
        corr = sum((r * d for r, d in zip(rho_c[:-1], d1s)), torch.zeros_like(x))
        x = base - bh * (corr + rho_c[-1] * (mt - m))
        hist = [mt] + hist[: max_order - 1]
    return x


@pytest.mark.parametrize("steps", [3, 5, 12])
def test_unipc_plan_equals_per_step_solves(steps):
    den = lambda x, s: torch.sin(x) * (1.0 / (1.0 + float(s)))
    noise = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    got = sample(den, noise, solver="unipc", schedule="logsnr", steps=steps).samples
    want = _unipc_per_step(den, noise * 80, make_sigmas("logsnr", steps).tolist())
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("steps", [3, 5, 12])
def test_unipc_with_a_callback_forms_the_corrected_states(steps):
    """Without a callback UniPC folds the corrector into the next predictor; with one it forms every corrected
    state. Both give the per-step reference's samples, and the trajectory holds its states."""
    den = lambda x, s: torch.sin(x) * (1.0 / (1.0 + float(s)))
    noise = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    plain = sample(den, noise, solver="unipc", schedule="logsnr", steps=steps)
    seen = sample(den, noise, solver="unipc", schedule="logsnr", steps=steps, return_trajectory=True)
    states: list[torch.Tensor] = []
    want = _unipc_per_step(den, noise * 80, make_sigmas("logsnr", steps).tolist(), states=states)
    assert torch.allclose(plain.samples, want, rtol=1e-12, atol=1e-12)
    assert torch.allclose(seen.trajectory, torch.stack(states + [want]), rtol=1e-12, atol=1e-12)


def test_euler_maruyama_fused_update_equals_the_textbook_step():
    """x_{i+1} = x_i + 2h (x_i - D)/sigma_i + sqrt(2 sigma_i |h|) eps with eps drawn as randn_like draws it."""
    den = lambda x, s: torch.tanh(x) / (1.0 + float(s))
    noise = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got = sample(den, noise, solver="euler_maruyama", steps=6, generator=torch.Generator().manual_seed(7)).samples
    gen, grid = torch.Generator().manual_seed(7), make_sigmas("polynomial", 6).tolist()
    x = noise * 80
    for s0, s1 in zip(grid[:-1], grid[1:]):
        eps = torch.randn(x.shape, generator=gen).to(torch.float64)
        x = x + 2 * (s1 - s0) * (x - den(x, s0)) / s0 + math.sqrt(2 * s0 * (s0 - s1)) * eps
    assert torch.allclose(got, x, rtol=1e-12, atol=1e-12)


def test_coefficient_tables_are_cached_per_grid_and_options():
    """A second run on the same grid reuses the table; other options on the same grid get their own."""
    den = lambda x, s: torch.sin(x) / (1.0 + float(s))
    noise = torch.randn(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sig = make_sigmas("polynomial", 8)
    for interp in ("sigma", "rho", "sigma"):
        got = sample(den, noise, solver="ipndm_v", steps=8, interp=interp, weights="exact").samples
        table = adams_coefficients("ipndm_v", sig.tolist(), 4, interp=interp, top_order_h=0.85)
        want = adams_solve(den, noise * 80, sig, table)
        assert torch.equal(got, want), interp


def test_ipndm_v_published_weights_option_is_the_reference_row():
    """``weights="published"`` samples with diff-sampler's weights (the bench's reference row, restated per step
    here), independent of interp/top_order_h; an unknown value of a choice option is a QACError."""
    den = lambda x, s: torch.sin(x) / (1.0 + float(s))
    noise = torch.randn(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sig = make_sigmas("polynomial", 7)
    s = sig.tolist()
    want = adams_solve(den, noise * 80, sig, [ipndm_v_published_coeffs(s, i, min(4, i + 1)) for i in range(7)])
    for opts in ({}, {"interp": "log", "top_order_h": None}):
        got = sample(den, noise, solver="ipndm_v", steps=7, weights="published", **opts).samples
        assert torch.equal(got, want), opts
    exact = sample(den, noise, solver="ipndm_v", steps=7, weights="exact").samples
    assert not torch.allclose(exact, want, rtol=1e-6)
    with pytest.raises(QACError, match="weights='nosuch' of 'ipndm_v' must be one of auto, exact, published"):
        sample(den, noise, solver="ipndm_v", steps=7, weights="nosuch")


@pytest.mark.parametrize("steps,coarse", [(7, True), (48, True), (64, False), (96, False)])
def test_ipndm_v_auto_weights_switch_on_the_largest_log_step(steps, coarse):
    """The default ``weights="auto"`` is diff-sampler's published table on a coarse grid (largest log-sigma
    step > ``coarse_h`` = 0.45: rho = 7 grids up to 48 steps) and the exact table on a fine one."""
    den = lambda x, s: torch.sin(x) / (1.0 + float(s))
    noise = torch.randn(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sig = make_sigmas("polynomial", steps)
    s = sig.tolist()
    h_max = max(math.log(a / b) for a, b in zip(s[:-1], s[1:]))
    assert (h_max > 0.45) == coarse
    got = sample(den, noise, solver="ipndm_v", steps=steps).samples
    pub = sample(den, noise, solver="ipndm_v", steps=steps, weights="published").samples
    exact = sample(den, noise, solver="ipndm_v", steps=steps, weights="exact").samples
    assert torch.equal(got, pub if coarse else exact)
    assert not torch.allclose(pub, exact, rtol=1e-9, atol=0)
    # the threshold is an option: a larger one keeps the exact table on the same grid
    wide = sample(den, noise, solver="ipndm_v", steps=steps, coarse_h=h_max * 1.01).samples
    assert torch.equal(wide, exact)
    with pytest.raises(QACError, match="coarse_h"):
        sample(den, noise, solver="ipndm_v", steps=steps, coarse_h=0.0)
    with pytest.raises(QACError, match="interp_rho"):  # checked whichever table the grid gets
        sample(den, noise, solver="ipndm_v", steps=steps, interp_rho=-7.0)


@pytest.mark.parametrize("steps", [12, 100])
def test_dpmpp_3m_auto_weight_is_the_blend(steps):
    """``d2_weight="auto"`` (default): ``w = 2 - min(1, (h/0.15)^2)``, checked against the independent per-step
    formulas; on 12 logSNR steps (h = 0.88) that is the published ``phi3`` run exactly, on 100 steps
    (h = 0.106) a weight of ~1.5."""
    den = lambda x, s: torch.sin(x) * (1.0 / (1.0 + float(s)))
    x0 = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 80
    sig = make_sigmas("logsnr", steps)
    h = math.log(80 / 0.002) / steps
    w = 2.0 - min(1.0, (h / 0.15) ** 2)
    got = sample(den, x0 / 80, solver="dpmpp_3m", schedule="logsnr", steps=steps).samples
    want = _dpmpp_per_step(den, x0, sig.tolist(), 3, w)
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
    pub = sample(den, x0 / 80, solver="dpmpp_3m", schedule="logsnr", steps=steps, d2_weight="phi3").samples
    assert torch.equal(got, pub) == (steps == 12)
    with pytest.raises(QACError, match="weight_h"):
        sample(den, x0, solver="dpmpp_3m", steps=steps, weight_h=-1.0)
