"""The rectified-flow sampling protocol (``schedule="flow"``; paper §4.2, Tabs. 1–4; docs/design.md §4).

An ``rf`` model is integrated on its own time t in [0, 1]: ``dx_t/dt = v(x_t, t)`` from ``x_1 = n`` (pure
noise, t = 1) down to t = 0, on the uniform grid ``t_k = 1 - k/N``. The velocity comes straight from the
network (:meth:`qac.model.QACModel.velocity`), which is finite at t = 1 where sigma = t/(1-t) is not, so the
protocol starts at the prior itself instead of at sigma_max. Solvers:

- ``euler``: ``x_{k+1} = x_k + (t_{k+1} - t_k) v_k``; N evaluations. For t_k < 1 this is the same map as Euler
  (= DDIM) in sigma-space on the grid sigma_k = t_k/(1-t_k) (a test checks it).
- ``heun``: Euler predictor, trapezoidal corrector ``x_k + h (v_k + v'_{k+1}) / 2``, and a final plain Euler
  step to t = 0 (as EDM's Heun does on its step to sigma = 0); 2N - 1 evaluations.
- ``rk45``: adaptive Dormand–Prince 5(4) in t from 1 to 0 (``rtol``, ``atol``, ``first_step`` in t);
  evaluations counted: 1 + 6 per attempted step, with accepted/rejected steps in ``SampleResult.stats``.

>>> import torch
>>> res = sample_flow(lambda x, t: -x, torch.ones(2, 1), solver="euler", steps=2)  # v = -x: x grows
>>> res.nfe, res.samples.flatten().tolist(), res.times.tolist()
(2, [2.25, 2.25], [1.0, 0.5, 0.0])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from qac.errors import QACError
from qac.sampling.sample import SampleResult, steps_spending
from qac.sampling.solvers._common import Callback, CountingCall, listener
from qac.sampling.solvers.adaptive import DopriCounts, check_tolerances, dopri5_interval
from qac.util import state_dtype

Velocity = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class FlowSolver:
    """A solver of the RF protocol: ``fn(velocity, x, times, *, callback, **opts) -> (x, counts | None)``."""

    name: str
    fn: Callable[..., tuple[Tensor, DopriCounts | None]]
    nfe: Callable[[int], int] | None
    nfe_rule: str


def flow_times(steps: int, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64) -> Tensor:
    """The uniform protocol grid ``t_k = 1 - k / steps``, k = 0..steps (t_0 = 1 exactly, t_N = 0 exactly).

    >>> flow_times(4).tolist()
    [1.0, 0.75, 0.5, 0.25, 0.0]
    """
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise QACError(f"steps must be an integer >= 1, got {steps!r}")
    return torch.tensor([1.0 - k / int(steps) for k in range(int(steps) + 1)], dtype=dtype, device=device)


def _report(callback: Callback | None, i: int, t: float, t_next: float, x: Tensor, v: Tensor) -> None:
    """The sigma-space callback keys plus ``t``: ``denoised`` is the x0-prediction x_t - t v."""
    if callback is not None:
        sig = (lambda u: math.inf if u >= 1 else u / (1 - u))
        callback({"i": i, "t": t, "t_next": t_next, "sigma": sig(t), "sigma_next": sig(t_next), "x": x,
                  "denoised": x - t * v})


def _call(velocity: Velocity, x: Tensor, t: float) -> Tensor:
    return velocity(x, x.new_tensor(t)).to(x.dtype)


def flow_euler(velocity: Velocity, x: Tensor, times: list[float], *,
               callback: Callback | None = None) -> tuple[Tensor, None]:
    """Euler in t; N evaluations."""
    for i in range(len(times) - 1):
        v = _call(velocity, x, times[i])
        _report(callback, i, times[i], times[i + 1], x, v)
        x = torch.add(x, v, alpha=times[i + 1] - times[i])
    return x, None


def flow_heun(velocity: Velocity, x: Tensor, times: list[float], *,
              callback: Callback | None = None) -> tuple[Tensor, None]:
    """Heun in t with the corrector on every step except the last (to t = 0: plain Euler); 2N - 1 evaluations."""
    n = len(times) - 1
    for i in range(n):
        h = times[i + 1] - times[i]
        v = _call(velocity, x, times[i])
        _report(callback, i, times[i], times[i + 1], x, v)
        x_pred = torch.add(x, v, alpha=h)
        if i == n - 1:
            x = x_pred
            continue
        v_next = _call(velocity, x_pred, times[i + 1])
        x = torch.add(x, v, alpha=0.5 * h).add_(v_next, alpha=0.5 * h)
    return x, None


def flow_rk45(velocity: Velocity, x: Tensor, times: list[float], *, callback: Callback | None = None,
              rtol: float = 1e-5, atol: float = 1e-5, first_step: float = 0.05,
              max_steps: int = 100_000) -> tuple[Tensor, DopriCounts]:
    """Adaptive Dormand–Prince 5(4) in t through the grid points (the protocol grid is just [1, 0])."""
    try:
        check_tolerances(float(rtol), float(atol))
    except ValueError as exc:
        raise QACError(str(exc)) from None
    if not first_step > 0:
        raise QACError(f"rk45 needs first_step > 0, got {first_step}")
    counts = DopriCounts(nfe=1)
    f = _call(velocity, x, times[0])
    h = float(first_step)
    for i in range(len(times) - 1):
        _report(callback, i, times[i], times[i + 1], x, f)
        x, f, h = dopri5_interval(lambda xj, u, _end: _call(velocity, xj, u), x, f, times[i], times[i + 1], h,
                                  rtol=float(rtol), atol=float(atol), counts=counts, max_steps=max_steps)
    return x, counts


FLOW_SOLVERS: dict[str, FlowSolver] = {
    s.name: s for s in (
        FlowSolver("euler", flow_euler, lambda n: n, "N"),
        FlowSolver("heun", flow_heun, lambda n: 2 * n - 1, "2N - 1 (final step Euler)"),
        FlowSolver("rk45", flow_rk45, None, "adaptive (counted)"),
    )
}


def get_flow_solver(name: str) -> FlowSolver:
    """The protocol's solver ``name`` (QACError naming the ones that fit)."""
    try:
        return FLOW_SOLVERS[name]
    except KeyError:
        raise QACError(f"schedule 'flow' (the rf protocol) runs solvers {', '.join(FLOW_SOLVERS)}; "
                       f"got {name!r} (use a sigma schedule such as polynomial for it)") from None


def flow_steps_for_nfe(solver: str, nfe: int) -> int:
    """Steps of the protocol that spend exactly ``nfe`` evaluations (QACError when none / adaptive).

    >>> flow_steps_for_nfe("heun", 5), flow_steps_for_nfe("euler", 3)
    (3, 3)
    """
    entry = get_flow_solver(solver)
    if entry.nfe is None:
        raise QACError(f"solver {solver!r} is adaptive: give rtol/atol (--opt rtol=1e-5), not nfe")
    steps = steps_spending(nfe, entry.nfe)
    if steps is None:
        raise QACError(f"solver {solver!r} under schedule 'flow' cannot spend exactly {nfe} evaluations "
                       f"(rule: {entry.nfe_rule})")
    return steps


def sample_flow(velocity: Velocity, noise: Tensor, *, solver: str = "heun", steps: int | None = None,
                nfe: int | None = None, return_trajectory: bool = False, callback: Callback | None = None,
                **solver_opts: Any) -> SampleResult:
    """Integrate ``dx/dt = velocity(x, t)`` from ``x_1 = noise`` (unit Gaussian) down to t = 0 (module docstring).

    ``steps`` or ``nfe`` fix the uniform grid of euler/heun; rk45 takes neither (its grid is [1, 0]) but
    ``rtol``, ``atol``, ``first_step``. The result's ``times`` is the grid, ``sigmas`` = t/(1-t) (inf at
    t = 1), ``trajectory`` the states x_t at the grid times, ``stats`` the rk45 step counts.
    """
    entry = get_flow_solver(solver)
    allowed = [k for k in ("rtol", "atol", "first_step", "max_steps") if entry.nfe is None]
    bad = [k for k in solver_opts if k not in allowed]
    if bad:
        raise QACError(f"solver {solver!r} under schedule 'flow' has no option {bad[0]!r} "
                       f"(options: {', '.join(allowed) or 'none'})")
    if entry.nfe is None:
        if nfe is not None or steps is not None:
            raise QACError(f"rk45 chooses its own steps: give tolerances (--opt rtol=... --opt atol=...), "
                           f"not {'--nfe' if nfe is not None else '--steps'}")
        steps = 1
    elif nfe is not None:
        if steps is not None:
            raise QACError("give either steps or nfe, not both")
        steps = flow_steps_for_nfe(solver, nfe)
    elif steps is None:
        raise QACError("give steps or nfe")
    dtype = state_dtype(noise.device)
    times = flow_times(steps, device=noise.device, dtype=dtype)
    counted = CountingCall(velocity)
    traj: list[Tensor] | None = [] if return_trajectory else None
    out, counts = entry.fn(counted, noise.to(dtype), times.tolist(), callback=listener(callback, traj), **solver_opts)
    if entry.nfe is not None and counted.calls != entry.nfe(steps):
        raise RuntimeError(f"flow {solver}: counted {counted.calls} evaluations, rule says {entry.nfe(steps)}")
    sigmas = torch.where(times < 1, times / (1 - times).clamp(min=1e-300), torch.full_like(times, math.inf))
    return SampleResult(samples=out, nfe=counted.calls, sigmas=sigmas, solver=solver,
                        trajectory=torch.stack(traj + [out]) if traj is not None else None, times=times,
                        stats=counts.as_dict() if counts is not None else None)
