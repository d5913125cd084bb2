"""Noise-level schedules: ``steps + 1`` sigmas from ``sigma_max`` down to ``sigma_min`` (docs/design.md §4).

Every schedule returns a strictly decreasing float64 list ``sigma_0 = sigma_max > ... > sigma_N = sigma_min``
(``N = steps`` solver steps). With ``final_zero=True`` the last point is ``sigma = 0`` instead: the
positive part then has ``steps`` points ``sigma_max ... sigma_min`` followed by ``0`` (EDM's convention,
whose Heun sampler with N = 18 points spends 2N - 1 = 35 evaluations).

Schedules (docs/design.md §4, with ``n = `` number of positive points):

- ``polynomial`` (EDM/Karras, default rho = 7):
  sigma_i = (sigma_max^(1/rho) + i/(n-1) * (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho.
- ``logsnr``: ln sigma linearly spaced (uniform in lambda = -ln sigma; the rho -> inf polynomial limit).
- ``time_uniform``: uniform in VP time (rho = 1; rho = 2 is DEIS's time-quadratic grid):
  t_i = (1 + i/(n-1) * (eps_s^(1/rho) - 1))^rho, sigma_i = sqrt(exp(beta_d t_i^2 / 2 + beta_min t_i) - 1)
  with eps_s = 1e-3 and beta_d, beta_min chosen so that sigma(eps_s) = sigma_min and sigma(1) = sigma_max.
- ``custom``: a user list, checked to be strictly decreasing and positive (a trailing 0 is allowed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from qac.errors import QACError

_EPS_S = 1e-3  # smallest VP time of the time_uniform schedule (DPM-Solver / diff-sampler)


@dataclass(frozen=True)
class Schedule:
    """A named schedule: ``fn(n, sigma_min, sigma_max, rho) -> n floats`` and its default rho."""

    name: str
    fn: Callable[[int, float, float, float], list[float]]
    default_rho: float
    description: str


def _fractions(n: int) -> list[float]:
    return [0.0] if n == 1 else [i / (n - 1) for i in range(n)]


def _polynomial(n: int, sigma_min: float, sigma_max: float, rho: float) -> list[float]:
    a, b = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
    return [(a + f * (b - a)) ** rho for f in _fractions(n)]


def _logsnr(n: int, sigma_min: float, sigma_max: float, rho: float) -> list[float]:
    a, b = math.log(sigma_max), math.log(sigma_min)
    return [math.exp(a + f * (b - a)) for f in _fractions(n)]


def vp_betas(sigma_min: float, sigma_max: float, eps_s: float = _EPS_S) -> tuple[float, float]:
    """(beta_d, beta_min) of the VP map sigma(t)^2 = exp(beta_d t^2/2 + beta_min t) - 1 hitting both ends.

    >>> [round(v, 4) for v in vp_betas(0.002, 80.0)]
    [17.538, -0.0048]
    """
    beta_d = 2 * (math.log(sigma_min**2 + 1) / eps_s - math.log(sigma_max**2 + 1)) / (eps_s - 1)
    beta_min = math.log(sigma_max**2 + 1) - beta_d / 2
    return beta_d, beta_min


def _time_uniform(n: int, sigma_min: float, sigma_max: float, rho: float) -> list[float]:
    beta_d, beta_min = vp_betas(sigma_min, sigma_max)
    out = []
    for f in _fractions(n):
        t = (1 + f * (_EPS_S ** (1.0 / rho) - 1)) ** rho
        out.append(math.sqrt(math.expm1(0.5 * beta_d * t * t + beta_min * t)))
    return out


SCHEDULES: dict[str, Schedule] = {
    s.name: s
    for s in (
        Schedule("polynomial", _polynomial, 7.0, "EDM/Karras rho-polynomial in sigma"),
        Schedule("logsnr", _logsnr, 1.0, "uniform in log-SNR (ln sigma linear); rho unused"),
        Schedule("time_uniform", _time_uniform, 1.0, "uniform in VP time t^(1/rho) (rho=2: DEIS quadratic)"),
    )
}


def _check_custom(values: Sequence[float]) -> list[float]:
    try:
        vals = [float(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise QACError("custom sigmas must be a list of numbers") from exc
    if len(vals) < 2:
        raise QACError("custom sigmas need at least 2 values (one step)")
    if any(not math.isfinite(v) for v in vals):
        raise QACError("custom sigmas must be finite")
    if any(b >= a for a, b in zip(vals, vals[1:])):
        raise QACError(f"custom sigmas must be strictly decreasing, got {vals}")
    if vals[-1] < 0 or any(v <= 0 for v in vals[:-1]):
        raise QACError("custom sigmas must be positive (only the last one may be 0)")
    return vals


def make_sigmas(schedule: str | Sequence[float] = "polynomial", steps: int | None = None, *,
                sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float | None = None,
                final_zero: bool = False, device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Build the sigma grid: a strictly decreasing tensor of ``steps + 1`` noise levels (docs/design.md §4).

    ``schedule`` is a name from :data:`SCHEDULES` or a custom list of sigmas (then ``steps`` may be
    omitted; if given it must equal ``len(list) - 1``). ``rho=None`` takes the schedule's default
    (7 for ``polynomial``, 1 for ``time_uniform``). ``final_zero`` makes the last point ``0``.

    >>> make_sigmas("polynomial", 3).tolist()  # doctest: +ELLIPSIS
    [80.0, 9.72..., 0.469..., 0.002]
    >>> make_sigmas("logsnr", 2, final_zero=True).tolist()
    [80.0, 0.002, 0.0]
    """
    if not isinstance(schedule, str):
        vals = _check_custom(schedule)
        if steps is not None and steps != len(vals) - 1:
            raise QACError(f"steps={steps} does not match the custom list of {len(vals)} sigmas")
        if final_zero and vals[-1] != 0:
            vals.append(0.0)
        return torch.tensor(vals, dtype=dtype, device=device)
    if schedule == "custom":
        raise QACError("schedule 'custom' needs the list of sigmas itself (pass it as the schedule)")
    if schedule not in SCHEDULES:
        raise QACError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)} or a list")
    if steps is None or isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise QACError(f"steps must be an integer >= 1, got {steps!r}")
    steps = int(steps)
    if not (math.isfinite(sigma_min) and math.isfinite(sigma_max)) or sigma_min <= 0:
        raise QACError(f"sigma_min must be > 0 and finite, got {sigma_min}")
    if sigma_min >= sigma_max:
        raise QACError(f"sigma_min ({sigma_min}) must be smaller than sigma_max ({sigma_max})")
    entry = SCHEDULES[schedule]
    rho = entry.default_rho if rho is None else float(rho)
    if not math.isfinite(rho) or rho <= 0:
        raise QACError(f"rho must be > 0, got {rho}")
    n = steps if final_zero else steps + 1
    vals = entry.fn(n, float(sigma_min), float(sigma_max), rho)
    vals[0] = float(sigma_max)  # exact ends despite rounding in the formulas
    if n > 1:
        vals[-1] = float(sigma_min)
    if final_zero:
        vals.append(0.0)
    if any(b >= a for a, b in zip(vals, vals[1:])):  # only reachable through float underflow
        raise QACError(f"schedule {schedule!r} with {steps} steps is not strictly decreasing")
    return torch.tensor(vals, dtype=dtype, device=device)
