"""Adams–Bashforth families on the slope ``d = (x - D)/sigma``: iPNDM, iPNDM-v (exact) and DEIS-tAB.

All three are ``x_{i+1} = x_i + sum_j C_{i,j} d_{i-j}`` with ``q = min(max_order, i + 1)`` (warm start).
They differ only in the coefficients ``C_{i,j}`` (reference notes ``edm_diffsampler.md`` §2.3):

- ``ipndm``: the fixed uniform-step AB coefficients times ``h_i = sigma_{i+1} - sigma_i``
  (1; 3/2, -1/2; 23/12, -16/12, 5/12; 55/24, -59/24, 37/24, -9/24), as in diff-sampler.
- ``ipndm_v``: variable-step AB, ``C_{i,j} = int_{sigma_i}^{sigma_{i+1}} l_j(sigma) dsigma`` with ``l_j`` the
  Lagrange basis over ``sigma_i, ..., sigma_{i-q+1}``, integrated exactly (polynomial antiderivative).
  diff-sampler's order-3/4 formulas are *not* these integrals; ours reduce to ``ipndm`` on uniform grids.
- ``deis`` (tAB): the slope is extrapolated by a Lagrange polynomial in VP time ``tau`` and integrated against
  ``dsigma``: ``C_{i,j} = int_{sigma_i}^{sigma_{i+1}} l_j(tau(sigma)) dsigma``. ``tau(sigma)`` is the VP time
  of the time_uniform map with the reference's fixed ends (sigma_min, sigma_max) = (0.002, 80); the integrand
  is smooth in sigma, so a 64-point Gauss–Legendre rule gives the integral to float64 precision.

Coefficients are computed once per call from the sigma grid (Python floats); the loop itself only does
tensor axpys. History buffers are local to each call. NFE = steps - [afs].
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from qac.sampling.schedules import vp_betas
from qac.sampling.solvers._common import Callback, Denoise, as_floats, first_denoised, report

AB_COEFFS: tuple[tuple[float, ...], ...] = (
    (1.0,),
    (3 / 2, -1 / 2),
    (23 / 12, -16 / 12, 5 / 12),
    (55 / 24, -59 / 24, 37 / 24, -9 / 24),
)
"""Uniform-step Adams–Bashforth weights of orders 1..4 (newest slope first)."""


def lagrange_integral_weights(nodes: list[float], a: float, b: float) -> list[float]:
    """Exact ``int_a^b l_j(t) dt`` for the Lagrange basis ``l_j`` over ``nodes`` (newest first).

    Computed in the scaled variable ``u = (t - a) / (b - a)`` for conditioning, so that the weights of a
    degree-(q-1) interpolant integrate every polynomial of that degree exactly.

    >>> [round(w, 12) for w in lagrange_integral_weights([0.0, -1.0], 0.0, 1.0)]
    [1.5, -0.5]
    """
    h = b - a
    u = [(t - a) / h for t in nodes]
    out = []
    for j, uj in enumerate(u):
        others = [uk for k, uk in enumerate(u) if k != j]
        poly = np.poly(others) if others else np.array([1.0])
        poly = poly / np.prod([uj - uk for uk in others]) if others else poly
        anti = np.polyint(poly)
        out.append(float(h * (np.polyval(anti, 1.0) - np.polyval(anti, 0.0))))
    return out


def _coeffs_ipndm(s: list[float], i: int, q: int) -> list[float]:
    h = s[i + 1] - s[i]
    return [h * c for c in AB_COEFFS[q - 1]]


def _coeffs_ipndm_v(s: list[float], i: int, q: int) -> list[float]:
    return lagrange_integral_weights([s[i - j] for j in range(q)], s[i], s[i + 1])


_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(64)
_VP_BETA_D, _VP_BETA_MIN = vp_betas(0.002, 80.0)


def vp_time(sigma: np.ndarray | float) -> np.ndarray:
    """VP time ``tau`` with ``sigma^2 = exp(beta_d tau^2 / 2 + beta_min tau) - 1`` (larger root)."""
    z = np.log1p(np.square(sigma))
    return (-_VP_BETA_MIN + np.sqrt(_VP_BETA_MIN**2 + 2 * _VP_BETA_D * z)) / _VP_BETA_D


def _coeffs_deis(s: list[float], i: int, q: int) -> list[float]:
    taus = [float(vp_time(s[i - j])) for j in range(q)]
    a, b = s[i], s[i + 1]
    sig = 0.5 * (b - a) * _GL_NODES + 0.5 * (a + b)
    tau = vp_time(sig)
    out = []
    for j in range(q):
        basis = np.ones_like(tau)
        for k in range(q):
            if k != j:
                basis = basis * (tau - taus[k]) / (taus[j] - taus[k])
        out.append(float(0.5 * (b - a) * np.dot(_GL_WEIGHTS, basis)))
    return out


def _adams(denoise: Denoise, x: Tensor, sigmas: Tensor, callback: Callback | None, afs: bool,
           max_order: int, coeffs: Callable[[list[float], int, int], list[float]]) -> Tensor:
    if not 1 <= max_order <= 4:
        raise ValueError(f"max_order must be in 1..4, got {max_order}")
    s = as_floats(sigmas)
    table = [coeffs(s, i, min(max_order, i + 1)) for i in range(len(s) - 1)]
    slopes: list[Tensor] = []  # newest first, at most max_order
    for i, c in enumerate(table):
        denoised = first_denoised(denoise, x, sigmas[i], s[i], afs and i == 0)
        report(callback, i, s[i], s[i + 1], x, denoised)
        slopes = [(x - denoised) / s[i]] + slopes[: max_order - 1]
        x_new = x
        for cj, dj in zip(c, slopes):
            x_new = torch.add(x_new, dj, alpha=cj)  # one fused op per term
        x = x_new
    return x


def ipndm(denoise: Denoise, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None,
          afs: bool = False, max_order: int = 4) -> Tensor:
    """iPNDM: fixed-coefficient Adams–Bashforth (order <= 4) on ``d`` in sigma (DEIS's improved PNDM)."""
    return _adams(denoise, x, sigmas, callback, afs, max_order, _coeffs_ipndm)


def ipndm_v(denoise: Denoise, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None,
            afs: bool = False, max_order: int = 4) -> Tensor:
    """iPNDM-v: variable-step Adams–Bashforth in sigma with exactly integrated Lagrange weights."""
    return _adams(denoise, x, sigmas, callback, afs, max_order, _coeffs_ipndm_v)


def deis(denoise: Denoise, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None,
         afs: bool = False, max_order: int = 4) -> Tensor:
    """DEIS-tAB: Adams–Bashforth with the slope's Lagrange polynomial in VP time, integrated in sigma.

    ``max_order=4`` is the tables' "DEIS-tAB3" (current slope plus three history slopes).
    """
    return _adams(denoise, x, sigmas, callback, afs, max_order, _coeffs_deis)


def adams_coefficients(kind: str, sigmas: list[float], max_order: int = 4) -> list[list[float]]:
    """The per-step coefficient table ``C_{i,j}`` of ``kind`` in {ipndm, ipndm_v, deis} (for tests/docs)."""
    fn = {"ipndm": _coeffs_ipndm, "ipndm_v": _coeffs_ipndm_v, "deis": _coeffs_deis}[kind]
    return [fn(sigmas, i, min(max_order, i + 1)) for i in range(len(sigmas) - 1)]

