"""Data-prediction multistep solvers in lambda = -ln sigma: DPM-Solver++ 2M/3M and UniPC-bh2.

docs/solvers.md (DPM-Solver++, Lu et al. 2022; UniPC, Zhao et al. 2023).
With ``h = lambda_{i+1} - lambda_i`` and history ``m_k = D(x_k; sigma_k)`` the first-order step is DDIM,
``x_{i+1} = (sigma_{i+1}/sigma_i) x_i - expm1(-h) m_i``. Higher orders add divided differences of the
history. ``lower_order_final`` (default on) lowers the order near the end so that the last step is
first order. A step to sigma = 0 returns the data prediction itself (the h -> inf limit).

Every update is linear in ``x_i`` and the history, ``x_{i+1} = a_i x_i + sum_j b_{i,j} m_{i-j}``, so the
coefficients of the whole grid are computed once, before the first network call (UniPC's small linear
solves included) and cached per (grid, options); a step is then one ``lerp`` plus one fused axpy per history
term. Histories are local to each call. NFE = steps - [afs] for all three.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from qac.errors import OptionError
from qac.sampling.solvers._common import (
    Callback,
    Denoise,
    add_terms_,
    as_floats,
    call,
    combine,
    first_denoised,
    report,
    threshold,
)

D2Weight = Literal["auto", "exact", "phi3"]
D2_WEIGHTS: tuple[str, ...] = ("auto", "exact", "phi3")


def _order(i: int, steps: int, max_order: int, lower_order_final: bool) -> int:
    q = min(max_order, i + 1)
    return min(q, steps - i) if lower_order_final else q


def _lams(s: list[float]) -> list[float]:
    return [-math.log(v) if v > 0 else math.inf for v in s]


@dataclass(frozen=True)
class LinearStep:
    """``x_{i+1} = lerp(m_i, x_i, a) + sum_j b[j] m_{i-j}`` (so the total weight on ``m_i`` is ``1 - a + b[0]``).

    ``a = sigma_{i+1}/sigma_i``; ``to_zero`` marks a step to sigma = 0 (``x_{i+1} = m_i``).
    """

    a: float
    b: tuple[float, ...]
    to_zero: bool = False


def _apply(step: LinearStep, x: Tensor, hist: list[Tensor]) -> Tensor:
    out = torch.lerp(hist[0], x, step.a)  # a x + (1 - a) m_i; a fresh tensor, so the axpys below are safe
    return add_terms_(out, step.b, hist)


def d2_weight_factor(h: float, d2_weight: D2Weight, weight_h: float) -> float:
    """The second-difference weight ``w`` of a 3M step of log-sigma length ``h``.

    ``exact``: 2 (the exact integral of the quadratic interpolant); ``phi3``: 1 (the published weight);
    ``auto``: ``w = 2 - min(1, (h / weight_h)^2)``, the published weight on steps with ``h >= weight_h`` and
    the exact one as ``h -> 0``. The deviation from the exact weight is ``O(h^2)``, so the local error of the
    step stays ``O(h^4)`` and the method third order.

    >>> d2_weight_factor(1.0, "auto", 0.5), d2_weight_factor(0.25, "auto", 0.5), d2_weight_factor(0.0, "auto", 0.5)
    (1.0, 1.75, 2.0)
    """
    if d2_weight == "exact":
        return 2.0
    if d2_weight == "phi3":
        return 1.0
    return 2.0 - min(1.0, (h / weight_h) ** 2)


def dpmpp_plan(s: list[float], max_order: int, lower_order_final: bool = True, d2_weight: D2Weight = "exact",
               top_order_h: float | None = None, weight_h: float = 0.15) -> list[LinearStep]:
    """Per-step coefficients of DPM-Solver++(2M/3M) on the grid ``s`` (see :func:`dpmpp_3m`)."""
    if d2_weight not in D2_WEIGHTS:
        raise OptionError(f"d2_weight must be one of {', '.join(D2_WEIGHTS)}, got {d2_weight!r}")
    if not (math.isfinite(weight_h) and weight_h > 0):
        raise OptionError(f"weight_h must be > 0, got {weight_h}")
    if top_order_h is not None and not top_order_h > 0:
        raise OptionError(f"top_order_h must be > 0 or None, got {top_order_h}")
    steps = len(s) - 1
    lam = _lams(s)
    plan = []
    for i in range(steps):
        if s[i + 1] == 0:
            plan.append(LinearStep(0.0, (), True))
            continue
        h = lam[i + 1] - lam[i]
        q = min(_order(i, steps, max_order, lower_order_final), i + 1)
        if top_order_h is not None and q == max_order > 1 and h > top_order_h:
            q -= 1
        phi1 = math.expm1(-h)
        if q == 1:
            b = np.zeros(1)
        elif q == 2:
            r0 = (lam[i] - lam[i - 1]) / h
            b = -0.5 * phi1 / r0 * np.array([1.0, -1.0])  # - phi1/2 * (m_i - m_{i-1}) / r0
        else:
            r0, r1 = (lam[i] - lam[i - 1]) / h, (lam[i - 1] - lam[i - 2]) / h
            d1_0 = np.array([1.0, -1.0, 0.0]) / r0  # (m_i - m_{i-1}) / r0
            d1_1 = np.array([0.0, 1.0, -1.0]) / r1  # (m_{i-1} - m_{i-2}) / r1
            d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
            d2 = (d1_0 - d1_1) / (r0 + r1)  # ~ h^2 m'' / 2
            phi2 = phi1 / h + 1.0
            phi3 = phi2 / h - 0.5
            w = d2_weight_factor(h, d2_weight, weight_h)
            b = phi2 * d1 - (w * phi3) * d2
        plan.append(LinearStep(s[i + 1] / s[i], tuple(float(v) for v in b)))
    return plan


@functools.lru_cache(maxsize=64)
def _cached_dpmpp_plan(s: tuple[float, ...], *opts: object) -> tuple[LinearStep, ...]:
    return tuple(dpmpp_plan(list(s), *opts))  # type: ignore[arg-type]


def _dpmpp(denoise: Denoise, x: Tensor, sigmas: Tensor, callback: Callback | None, afs: bool,
           plan: Sequence[LinearStep], thresholding: float | None) -> Tensor:
    s = as_floats(sigmas)
    hist: list[Tensor] = []  # m_i, m_{i-1}, m_{i-2}
    for i, step in enumerate(plan):
        m = threshold(first_denoised(denoise, x, sigmas[i], s[i], afs and i == 0), thresholding)
        report(callback, i, s[i], s[i + 1], x, m)
        hist = [m] + hist[:2]
        x = m if step.to_zero else _apply(step, x, hist)
    return x


def dpmpp_2m(denoise: Denoise, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None,
             afs: bool = False, lower_order_final: bool = True, thresholding: float | None = None) -> Tensor:
    """DPM-Solver++(2M): ``x_{i+1} = (s_{i+1}/s_i) x_i - phi1 m_i - phi1/2 (m_i - m_{i-1}) / r0``.

    ``phi1 = expm1(-h)``, ``r0 = (lambda_i - lambda_{i-1}) / h``. ``thresholding`` is the dynamic-threshold
    quantile (e.g. 0.995 for pixel images), off by default. NFE = steps - [afs].
    """
    plan = _cached_dpmpp_plan(tuple(as_floats(sigmas)), 2, lower_order_final)
    return _dpmpp(denoise, x, sigmas, callback, afs, plan, thresholding)


def dpmpp_3m(denoise: Denoise, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None,
             afs: bool = False, lower_order_final: bool = True, thresholding: float | None = None,
             d2_weight: D2Weight = "auto", top_order_h: float | None = None, weight_h: float = 0.15) -> Tensor:
    """DPM-Solver++(3M): ``x_{i+1} = (s_{i+1}/s_i) x_i - phi1 m_i + phi2 D1 - w phi3 D2``.

    ``D1 ~ h m'`` and ``D2 = (D1_0 - D1_1)/(r0 + r1) ~ h^2 m''/2`` are the divided differences of the
    DPM-Solver++ paper (Lu et al. 2022); ``phi2 = phi1/h + 1``, ``phi3 = phi2/h - 1/2``. The exact integral
    of the quadratic
    interpolant, ``int_0^h e^(u-h) u^2/2 du = -h^2 phi3``, needs ``w = 2`` (``d2_weight="exact"``); the
    published form (DPM-Solver code, diff-sampler) has ``w = 1`` (``d2_weight="phi3"``), which integrates only
    linear data predictions exactly and is second order.

    ``d2_weight="auto"`` (default) blends the two: ``w = 2 - min(1, (h / weight_h)^2)`` with ``weight_h = 0.15``
    (:func:`d2_weight_factor`), the published weight on long log-sigma steps, where below sigma ~ 1 the data
    prediction saturates and the exact quadratic extrapolation overshoots, and the exact one as ``h -> 0``
    (third order kept). Measured on 12 Gaussian mixtures: never worse than the published form at NFE 3-64,
    better from NFE 128 on (docs/solvers.md, docs/results/solver_defaults.md). ``top_order_h`` (default
    off) takes the 2M step while ``h > top_order_h``. The published solver is ``d2_weight="phi3"``.
    NFE = steps - [afs].
    """
    plan = _cached_dpmpp_plan(tuple(as_floats(sigmas)), 3, lower_order_final, d2_weight, top_order_h, weight_h)
    return _dpmpp(denoise, x, sigmas, callback, afs, plan, thresholding)


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
    rk = np.asarray(rks, dtype=np.float64)
    r_mat = np.stack([rk ** (p - 1) for p in range(1, q + 1)])
    b_vec = np.asarray(b, dtype=np.float64)
    if q == 1:
        return [], [0.5], b_h
    rho_p = [0.5] if q == 2 else np.linalg.solve(r_mat[:-1, :-1], b_vec[:-1]).tolist()
    return rho_p, np.linalg.solve(r_mat, b_vec).tolist(), b_h


@dataclass(frozen=True)
class UniPCStep:
    """One UniPC step: ``predictor`` (a :class:`LinearStep` on the history) and the corrector's change
    ``x_{i+1} = x~ + c_new m~ + sum_j c[j] m_{i-j}``; ``corrector`` is False on the last step."""

    predictor: LinearStep
    c_new: float
    c: tuple[float, ...]
    corrector: bool


def unipc_plan(s: list[float], max_order: int = 3, lower_order_final: bool = True) -> list[UniPCStep]:
    """Per-step UniPC-bh2 coefficients on the grid ``s`` (all linear solves done here, once)."""
    steps = len(s) - 1
    lam = _lams(s)
    plan = []
    for i in range(steps):
        if s[i + 1] == 0:
            plan.append(UniPCStep(LinearStep(0.0, (), True), 0.0, (), False))
            continue
        q = min(_order(i, steps, max_order, lower_order_final), i + 1)
        h = lam[i + 1] - lam[i]
        rks = [(lam[i - k] - lam[i]) / h for k in range(1, q)] + [1.0]
        rho_p, rho_c, b_h = _unipc_rhos(rks, h, q)
        # D1_k = (m_{i-k} - m_i) / r_k; predictor: - B sum rho^p_k D1_k
        bp = np.zeros(q)
        for k in range(1, q):
            w = -b_h * (rho_p[k - 1] if k - 1 < len(rho_p) else 0.0) / rks[k - 1]
            bp[k] += w
            bp[0] -= w
        bc = np.zeros(q)
        for k in range(1, q):
            w = -b_h * rho_c[k - 1] / rks[k - 1]
            bc[k] += w
            bc[0] -= w
        c_new = -b_h * rho_c[-1]  # - B rho^c_last (m~ - m_i)
        bc[0] -= c_new
        pred = LinearStep(s[i + 1] / s[i], tuple(float(v) for v in bp))
        plan.append(UniPCStep(pred, float(c_new), tuple(float(v) for v in bc - bp), i < steps - 1))
    return plan


@functools.lru_cache(maxsize=64)
def _cached_unipc_plan(s: tuple[float, ...], max_order: int, lower_order_final: bool) -> tuple[UniPCStep, ...]:
    return tuple(unipc_plan(list(s), max_order, lower_order_final))


def _combine(base: Tensor, pending: Sequence[float], hist: Sequence[Tensor]) -> Tensor:
    """``base + sum_k pending[k] hist[k]`` (``base`` itself when nothing is pending)."""
    return combine(base, pending, hist) if any(w != 0.0 for w in pending) else base


def unipc(denoise: Denoise, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None,
          afs: bool = False, max_order: int = 3, lower_order_final: bool = True,
          thresholding: float | None = None) -> Tensor:
    """UniPC (bh2, data prediction): a UniP predictor plus the UniC corrector at the new point.

    Predictor: ``x~ = (s_{i+1}/s_i) x_i - phi m_i - B(h) sum_k rho^p_k D1_k`` with ``D1_k = (m_k - m_i)/r_k``;
    corrector: ``x_{i+1} = (s_{i+1}/s_i) x_i - phi m_i - B(h) (sum_k rho^c_k D1_k + rho^c_last (m~ - m_i))``
    where ``m~ = D(x~; sigma_{i+1})`` is reused as the next step's history value. The corrector is skipped
    on the last step, so NFE = steps - [afs]. ``max_order`` <= 3.

    The corrected state is only ever an input of the next predictor (the network sees ``x~``), so without a
    callback it is not formed: it is kept as ``x~ + sum_k w_k m_k`` and its weights are folded into the next
    predictor's (five passes over the state per step at order 3 instead of eight; equal up to rounding).
    """
    if not 1 <= max_order <= 3:
        raise OptionError(f"unipc supports max_order 1..3, got {max_order}")
    s = as_floats(sigmas)
    plan = _cached_unipc_plan(tuple(s), max_order, lower_order_final)
    m = threshold(first_denoised(denoise, x, sigmas[0], s[0], afs), thresholding)
    hist: list[Tensor] = [m]  # m_i, m_{i-1}, ...
    pending: tuple[float, ...] = ()  # x_i = x + sum_k pending[k] hist[k] (the corrector, not yet applied)
    for i, step in enumerate(plan):
        if callback is not None:
            x, pending = _combine(x, pending, hist), ()
        report(callback, i, s[i], s[i + 1], x, hist[0])
        pred = step.predictor
        if pred.to_zero:
            x, pending = hist[0], ()
            continue
        # x~ = a x_i + (1 - a) m_i + sum_j b_j m_{i-j}, with x_i = x + sum_k pending[k] m_{i-k}
        w = [pred.a * p for p in pending] + [0.0] * max(0, len(pred.b) - len(pending))
        for j, bj in enumerate(pred.b):
            w[j] += bj
        x_pred = torch.lerp(hist[0], x, pred.a)  # a fresh tensor, so the axpys below are safe
        for wk, mk in zip(w, hist):
            if wk != 0.0:
                x_pred.add_(mk, alpha=wk)
        x, pending = x_pred, ()
        if not step.corrector:
            continue
        m_new = threshold(call(denoise, x_pred, sigmas[i + 1]), thresholding)
        hist = [m_new] + hist[:max_order]  # one more than the predictor needs: the pending corrector's oldest
        pending = (step.c_new,) + step.c
    return _combine(x, pending, hist)
