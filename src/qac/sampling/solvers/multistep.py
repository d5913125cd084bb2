"""Data-prediction multistep solvers in lambda = -ln sigma: DPM-Solver++ 2M/3M and UniPC-bh2.

Reference notes ``edm_diffsampler.md`` §2.3 (DPM-Solver++, Lu et al. 2022; UniPC, Zhao et al. 2023).
With ``h = lambda_{i+1} - lambda_i`` and history ``m_k = D(x_k; sigma_k)`` the first-order step is DDIM,
``x_{i+1} = (sigma_{i+1}/sigma_i) x_i - expm1(-h) m_i``. Higher orders add divided differences of the
history. ``lower_order_final`` (default on) lowers the order near the end so that the last step is
first order. A step to sigma = 0 returns the data prediction itself (the h -> inf limit).
Histories are local to each call. NFE = steps - [afs] for both.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from qac.sampling.solvers._common import Callback, Denoise, as_floats, call, first_denoised, report, threshold


def _order(i: int, steps: int, max_order: int, lower_order_final: bool) -> int:
    q = min(max_order, i + 1)
    return min(q, steps - i) if lower_order_final else q


def _dpmpp(denoise: Denoise, x: Tensor, sigmas: Tensor, callback: Callback | None, afs: bool,
           max_order: int, lower_order_final: bool, thresholding: float | None) -> Tensor:
    s = as_floats(sigmas)
    steps = len(s) - 1
    lam = [-math.log(v) if v > 0 else math.inf for v in s]
    hist: list[Tensor] = []  # m_i, m_{i-1}, m_{i-2}
    for i in range(steps):
        m = first_denoised(denoise, x, sigmas[i], s[i], afs and i == 0)
        m = threshold(m, thresholding)
        report(callback, i, s[i], s[i + 1], x, m)
        hist = [m] + hist[:2]
        if s[i + 1] == 0:
            x = m
            continue
        q = min(_order(i, steps, max_order, lower_order_final), len(hist))
        h = lam[i + 1] - lam[i]
        phi1 = math.expm1(-h)
        x_new = torch.lerp(m, x, s[i + 1] / s[i])  # = (s'/s) x - phi1 m, since -phi1 = 1 - s'/s
        if q == 2:
            r0 = (lam[i] - lam[i - 1]) / h
            x_new = torch.add(x_new, m - hist[1], alpha=-0.5 * phi1 / r0)
        elif q == 3:
            r0, r1 = (lam[i] - lam[i - 1]) / h, (lam[i - 1] - lam[i - 2]) / h
            d1_0, d1_1 = (m - hist[1]) / r0, (hist[1] - hist[2]) / r1
            d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
            d2 = (d1_0 - d1_1) / (r0 + r1)  # ~ h^2 m'' / 2
            phi2 = phi1 / h + 1.0
            phi3 = phi2 / h - 0.5
            x_new = x_new + phi2 * d1 - (2.0 * phi3) * d2
        x = x_new
    return x


def dpmpp_2m(denoise: Denoise, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None,
             afs: bool = False, lower_order_final: bool = True, thresholding: float | None = None) -> Tensor:
    """DPM-Solver++(2M): ``x_{i+1} = (s_{i+1}/s_i) x_i - phi1 m_i - phi1/2 (m_i - m_{i-1}) / r0``.

    ``phi1 = expm1(-h)``, ``r0 = (lambda_i - lambda_{i-1}) / h``. ``thresholding`` is the dynamic-threshold
    quantile (e.g. 0.995 for pixel images), off by default. NFE = steps - [afs].
    """
    return _dpmpp(denoise, x, sigmas, callback, afs, 2, lower_order_final, thresholding)


def dpmpp_3m(denoise: Denoise, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None,
             afs: bool = False, lower_order_final: bool = True, thresholding: float | None = None) -> Tensor:
    """DPM-Solver++(3M): ``x_{i+1} = (s_{i+1}/s_i) x_i - phi1 m_i + phi2 D1 - 2 phi3 D2``.

    ``D1 ~ h m'`` and ``D2 = (D1_0 - D1_1)/(r0 + r1) ~ h^2 m''/2`` are the divided differences of the
    reference notes; ``phi2 = phi1/h + 1``, ``phi3 = phi2/h - 1/2``. The exact integral of the quadratic
    interpolant, ``int_0^h e^(u-h) u^2/2 du = -h^2 phi3``, needs the factor 2 on ``phi3 D2``: the widely
    copied form ``- phi3 D2`` (DPM-Solver code, diff-sampler) integrates only linear data predictions
    exactly and
    is second order in practice. NFE = steps - [afs].
    """
    return _dpmpp(denoise, x, sigmas, callback, afs, 3, lower_order_final, thresholding)


def _unipc_rhos(rks: list[float], h: float, q: int) -> tuple[list[float], list[float], float]:
    """UniPC-bh2 weights: predictor rho^p (size q-1), corrector rho^c (size q) and B(h).

    Solves ``R rho = b`` with ``R_{p,k} = r_k^(p-1)`` and ``b_p = g_p p! / B(h)``, ``hh = -h``,
    ``g_1 = expm1(hh)/hh - 1``, ``g_{p+1} = g_p / hh - 1/(p+1)!``, ``B(h) = expm1(hh)`` (bh2).
    ``rks`` holds the q-1 history ratios ``(lambda_k - lambda_i)/h`` followed by 1.
    """
    hh = -h
    b_h = math.expm1(hh)
    g = math.expm1(hh) / hh - 1.0
    fact = 1.0
    b = []
    for p in range(1, q + 1):
        b.append(g * fact / b_h)
        fact *= p + 1
        g = g / hh - 1.0 / fact
    rk = torch.tensor(rks, dtype=torch.float64)
    r_mat = torch.stack([rk ** (p - 1) for p in range(1, q + 1)])
    b_vec = torch.tensor(b, dtype=torch.float64)
    if q == 1:
        rho_p: list[float] = []
        rho_c = [0.5]
    else:
        rho_p = [0.5] if q == 2 else torch.linalg.solve(r_mat[:-1, :-1], b_vec[:-1]).tolist()
        rho_c = torch.linalg.solve(r_mat, b_vec).tolist()
    return rho_p, rho_c, b_h


def unipc(denoise: Denoise, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None,
          afs: bool = False, max_order: int = 3, lower_order_final: bool = True,
          thresholding: float | None = None) -> Tensor:
    """UniPC (bh2, data prediction): a UniP predictor plus the UniC corrector at the new point.

    Predictor: ``x~ = (s_{i+1}/s_i) x_i - phi m_i - B(h) sum_k rho^p_k D1_k`` with ``D1_k = (m_k - m_i)/r_k``;
    corrector: ``x_{i+1} = (s_{i+1}/s_i) x_i - phi m_i - B(h) (sum_k rho^c_k D1_k + rho^c_last (m~ - m_i))``
    where ``m~ = D(x~; sigma_{i+1})`` is reused as the next step's history value. The corrector is skipped
    on the last step, so NFE = steps - [afs]. ``max_order`` <= 3.
    """
    if not 1 <= max_order <= 3:
        raise ValueError(f"unipc supports max_order 1..3, got {max_order}")
    s = as_floats(sigmas)
    steps = len(s) - 1
    lam = [-math.log(v) if v > 0 else math.inf for v in s]
    m = threshold(first_denoised(denoise, x, sigmas[0], s[0], afs), thresholding)
    hist: list[Tensor] = [m]  # m_i, m_{i-1}, ...
    for i in range(steps):
        m = hist[0]
        report(callback, i, s[i], s[i + 1], x, m)
        if s[i + 1] == 0:
            x = m
            continue
        q = min(_order(i, steps, max_order, lower_order_final), len(hist))
        h = lam[i + 1] - lam[i]
        rks = [(lam[i - k] - lam[i]) / h for k in range(1, q)] + [1.0]
        d1s = [(hist[k] - m) / rks[k - 1] for k in range(1, q)]
        rho_p, rho_c, b_h = _unipc_rhos(rks, h, q)
        x_base = (s[i + 1] / s[i]) * x - math.expm1(-h) * m
        x_pred = x_base
        for rho, d1 in zip(rho_p, d1s):
            x_pred = x_pred - (b_h * rho) * d1
        if i == steps - 1:
            x = x_pred
            continue
        m_new = threshold(call(denoise, x_pred, sigmas[i + 1]), thresholding)
        x_new = x_base - (b_h * rho_c[-1]) * (m_new - m)
        for rho, d1 in zip(rho_c[:-1], d1s):
            x_new = x_new - (b_h * rho) * d1
        x = x_new
        hist = [m_new] + hist[: max_order - 1]
    return x
