"""Adaptive Dormand–Prince RK5(4) on the PF-ODE in ``u = ln sigma``: ``dx/du = x - D(x; e^u)``.

Working in ``ln sigma`` makes the ODE non-stiff across the five decades of an EDM grid. The integrator
passes through every grid sigma (so callbacks and trajectories see the same points as the fixed-step
solvers) and carries its step size across grid intervals. The error norm is the per-sample RMS of
``err / (atol + rtol * max(|x|, |x_new|))``, maximised over the batch: a sample is never integrated
less accurately because of its batch mates, but the accepted steps are shared (results depend on the
batch only at the tolerance level). A step to sigma = 0 returns ``D`` at the last positive sigma, which
is already known (first-same-as-last), so it costs nothing. NFE = 1 + 6 per attempted step, reported in
``stats`` when given.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from qac.errors import OptionError
from qac.sampling.solvers._common import Callback, Denoise, as_floats, call, combine, report

_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_B = _A[6] + (0.0,)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
_E = tuple(b - b4 for b, b4 in zip(_B, _B4))


@dataclass
class DopriCounts:
    """Bookkeeping of one adaptive solve: evaluations, accepted and rejected steps."""

    nfe: int = 0
    accepted: int = 0
    rejected: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts as ``{nfe, accepted, rejected}`` (what ``SampleResult.stats`` holds)."""
        return {"nfe": self.nfe, "accepted": self.accepted, "rejected": self.rejected}


def dopri5_interval(fn: Callable[[Tensor, float, bool], Tensor], x: Tensor, k0: Tensor, u: float, u_end: float,
                    h: float, *, rtol: float, atol: float, counts: DopriCounts,
                    max_steps: int = 100_000) -> tuple[Tensor, Tensor, float]:
    """Dormand–Prince 5(4) for ``dx/du = fn(x, u, at_end)`` from ``u`` to ``u_end`` (either direction).

    ``k0 = fn(x, u)`` is known (first-same-as-last); ``h`` is the proposed step (its sign is taken from the
    direction). ``at_end`` is True for a stage evaluated exactly at ``u_end`` (callers may use an exact end
    value there). Standard control: safety 0.9, factor in [0.2, 5], error norm = per-row RMS of
    ``err / (atol + rtol max(|x|, |x_new|))``, maximised over the batch. Returns ``(x, fn(x, u_end), h)``:
    the next proposal is kept when the last step was only shortened to land on ``u_end``.
    """
    direction = 1.0 if u_end > u else -1.0
    h = direction * abs(h)
    f = k0
    while (u_end - u) * direction > 0:
        if counts.accepted + counts.rejected >= max_steps:
            raise RuntimeError(f"rk45 exceeded max_steps={max_steps}")
        hit = (u + h - u_end) * direction >= 0
        step = u_end - u if hit else h
        ks = [f]
        for j in range(1, 7):
            xj = combine(x, [step * a for a in _A[j]], ks)
            if j == 6:
                x_new = xj
            end = hit and _C[j] == 1.0
            ks.append(fn(xj, u_end if end else u + _C[j] * step, end))
        counts.nfe += 6
        err = combine(None, [step * e for e in _E], ks)
        scale = torch_max_abs(x, x_new).mul_(rtol).add_(atol)  # atol + rtol max(|x|, |x_new|)
        err_norm = float(err.div_(scale).square_().reshape(err.shape[0], -1).mean(dim=1).sqrt().max())
        if err_norm <= 1.0:
            counts.accepted += 1
            x, f = x_new, ks[6]
            u = u_end if hit else u + step
        else:
            counts.rejected += 1
        factor = 5.0 if err_norm == 0 else min(5.0, max(0.2, 0.9 * err_norm ** -0.2))
        if not (err_norm <= 1.0 and hit and abs(step) < abs(h)):
            h = step * factor  # a short step clipped to the end keeps the previous proposal
    return x, f, h


def check_tolerances(rtol: float, atol: float) -> None:
    """rk45 needs positive, finite tolerances."""
    if not (0 < rtol < math.inf and 0 < atol < math.inf):
        raise OptionError(f"rk45 needs rtol > 0 and atol > 0, got rtol={rtol}, atol={atol}")


def rk45(denoise: Denoise, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None,
         rtol: float = 1e-5, atol: float = 1e-5, first_step: float = 0.05, max_steps: int = 100_000,
         stats: dict[str, Any] | None = None) -> Tensor:
    """Dormand–Prince 5(4) in ``u = ln sigma`` through every grid sigma (:func:`dopri5_interval`).

    ``first_step`` is the initial step in ``ln sigma``. ``stats`` (a dict) receives ``nfe``, ``accepted``
    and ``rejected``. AFS does not apply.

    >>> import torch
    >>> out = rk45(lambda x, s: 0 * x, torch.ones(1, 1) * 80, torch.tensor([80.0, 1.0]), rtol=1e-9, atol=1e-9)
    >>> round(out.item(), 6)  # D = 0: x scales like sigma
    1.0
    """
    check_tolerances(rtol, atol)
    s = as_floats(sigmas)
    counts = DopriCounts(nfe=1)
    f = x - call(denoise, x, sigmas[0])
    h = -abs(first_step)
    for i in range(len(s) - 1):
        report(callback, i, s[i], s[i + 1], x, x - f)
        if s[i + 1] == 0:
            x = x - f
            continue
        s_end = s[i + 1]

        def slope(xj: Tensor, u: float, at_end: bool, s_end: float = s_end) -> Tensor:
            return xj - call(denoise, xj, sigmas.new_tensor(s_end if at_end else math.exp(u)))

        x, f, h = dopri5_interval(slope, x, f, math.log(s[i]), math.log(s_end), h, rtol=rtol, atol=atol,
                                  counts=counts, max_steps=max_steps)
    if stats is not None:
        stats.update(counts.as_dict())
    return x


def torch_max_abs(a: Tensor, b: Tensor) -> Tensor:
    """Elementwise ``max(|a|, |b|)`` as a fresh tensor."""
    out = a.abs()
    return torch.maximum(out, b.abs(), out=out)

