"""``sample()``: schedule + unit noise + solver -> samples, with exact NFE accounting (docs/design.md §4)."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from qac.errors import QACError
from qac.sampling.registry import SolverEntry, get_solver
from qac.sampling.schedules import make_sigmas
from qac.sampling.solvers._common import Callback, CountingCall, Denoise, listener
from qac.util import state_dtype


@dataclass(frozen=True)
class SampleResult:
    """What :func:`sample` returns.

    ``samples``: [B, ...] in the state dtype (float64 except on MPS); ``nfe``: denoiser calls actually made;
    ``sigmas``: the grid used ([steps + 1]); ``trajectory``: [steps + 1, B, ...] states at every grid sigma
    (first = sigma_max * noise, last = samples) when requested, else ``None``. Under the RF protocol
    (:mod:`qac.sampling.flow`) ``times`` is the t grid (the trajectory then holds x_t, ``sigmas`` = t/(1-t));
    ``stats`` holds an adaptive solver's step counts (``nfe``, ``accepted``, ``rejected``).
    """

    samples: Tensor
    nfe: int
    sigmas: Tensor
    solver: str
    trajectory: Tensor | None = None
    times: Tensor | None = None
    stats: dict[str, int] | None = None

    @property
    def steps(self) -> int:
        """Number of solver steps, ``len(sigmas) - 1``."""
        return len(self.sigmas) - 1


def steps_spending(nfe: int, count: Callable[[int], int]) -> int | None:
    """The smallest step count ``k`` with ``count(k) == nfe`` (``None`` if there is none); ``nfe`` is checked
    to be an integer >= 1 (QACError otherwise)."""
    if isinstance(nfe, bool) or int(nfe) != nfe or nfe < 1:
        raise QACError(f"nfe must be an integer >= 1, got {nfe!r}")
    return next((k for k in range(1, int(nfe) + 3) if count(k) == nfe), None)


def steps_for_nfe(solver: str, nfe: int, *, afs: bool = False, final_zero: bool = False) -> int:
    """The number of steps at which ``solver`` spends exactly ``nfe`` evaluations (QACError if none).

    >>> steps_for_nfe("heun", 35, final_zero=True), steps_for_nfe("dpmpp_2m", 5, afs=True)
    (18, 6)
    """
    entry = get_solver(solver)
    if entry.nfe is None:
        raise QACError(f"solver {solver!r} is adaptive: give steps (and rtol/atol), not nfe")
    afs = afs and entry.afs
    steps = steps_spending(nfe, lambda k: entry.nfe(k, afs, final_zero))
    if steps is None:
        raise QACError(f"solver {solver!r} cannot spend exactly {nfe} evaluations (rule: {entry.nfe_rule}, "
                       f"afs={afs}, final_zero={final_zero})")
    return steps


def resolve_nfe(solver: str, nfe: int, *, afs: bool = False, final_zero: bool = False) -> tuple[int, bool]:
    """``(steps, final_zero)`` spending exactly ``nfe`` evaluations, with EDM's Heun convention as the fallback.

    When no step count fits without a final sigma = 0, a solver whose last step to sigma = 0 is plain Euler
    (heun, dpm2, edm_sde) takes the grid ending at 0: ``heun`` with NFE 35 = 18 steps, the 18th to sigma = 0
    (EDM Algorithm 1, 2N - 1 evaluations). Solvers for which the final 0 changes nothing keep the plain grid.

    >>> resolve_nfe("heun", 35), resolve_nfe("heun", 36), resolve_nfe("euler", 5)
    ((18, True), (18, False), (5, False))
    """
    try:
        return steps_for_nfe(solver, nfe, afs=afs, final_zero=final_zero), final_zero
    except QACError:
        entry = get_solver(solver)
        if final_zero or entry.nfe is None or entry.nfe(2, afs, True) == entry.nfe(2, afs, False):
            raise
        return steps_for_nfe(solver, nfe, afs=afs, final_zero=True), True


def _check_opts(entry: SolverEntry, opts: dict[str, Any]) -> None:
    params = inspect.signature(entry.fn).parameters
    allowed = [p for p in params if p not in ("denoise", "x", "sigmas", "callback", "afs", "generator")]
    bad = [k for k in opts if k not in allowed]
    if bad:
        raise QACError(f"solver {entry.name!r} has no option {bad[0]!r} "
                       f"(options: {', '.join(allowed) or 'none'})")
    hints = typing.get_type_hints(entry.fn) if opts else {}
    for key, value in opts.items():
        choices = typing.get_args(hints[key]) if typing.get_origin(hints.get(key)) is Literal else ()
        if choices and value not in choices:
            raise QACError(f"solver option {key}={value!r} of {entry.name!r} must be one of "
                           f"{', '.join(map(str, choices))}")
        default = params[key].default
        numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
        if value is None and "None" in str(params[key].annotation):
            continue  # an optional number switched off
        if numeric and (isinstance(value, (str, bool)) or not isinstance(value, (int, float))):
            raise QACError(f"solver option {key}={value!r} of {entry.name!r} must be a number "
                           f"(default {default})")


def sample(denoise: Denoise, noise: Tensor, *, solver: str = "euler", steps: int | None = None,
           nfe: int | None = None, schedule: str | Sequence[float] = "polynomial", sigma_min: float = 0.002,
           sigma_max: float = 80.0, rho: float | None = None, afs: bool = False, final_zero: bool = False,
           return_trajectory: bool = False,
           generator: torch.Generator | Sequence[torch.Generator] | None = None,
           callback: Callback | None = None, **solver_opts: Any) -> SampleResult:
    """Sample by integrating from ``sigma_max * noise`` down the schedule with ``solver``.

    ``noise`` is UNIT Gaussian [B, ...] (e.g. :func:`qac.util.per_seed_randn`); the state is kept in
    :func:`qac.util.state_dtype` of its device. Give ``steps`` (solver steps; the grid has steps + 1
    points) or ``nfe`` (the step count that spends exactly that many denoiser calls; an NFE that only fits
    with a final sigma = 0, e.g. Heun's 35, appends it: EDM's convention, :func:`resolve_nfe`). ``schedule`` is a
    name (polynomial, logsnr, time_uniform) or a custom decreasing list of sigmas. ``rho=None`` uses the
    schedule's default. ``afs`` replaces the first network call by the analytical first step (where the
    solver supports it). ``final_zero`` appends sigma = 0. ``generator`` (one, or one per row) feeds the
    stochastic solvers. Remaining keywords are solver options (e.g. ``max_order=3``, ``S_churn=40``).

    >>> import torch
    >>> res = sample(lambda x, s: torch.zeros_like(x), torch.ones(2, 3), solver="heun", nfe=8)
    >>> res.nfe, res.steps, res.samples.dtype
    (8, 4, torch.float64)
    """
    if schedule == "flow":
        raise QACError("schedule 'flow' integrates an rf model's velocity in t: use qac.sampling.generate.generate "
                       "(or qac.sampling.flow.sample_flow with a velocity function)")
    entry = get_solver(solver)
    _check_opts(entry, solver_opts)
    if afs and not entry.afs:
        raise QACError(f"solver {solver!r} does not support the analytical first step (afs)")
    custom = not isinstance(schedule, str)
    if nfe is not None:
        if steps is not None:
            raise QACError("give either steps or nfe, not both")
        if custom:
            raise QACError("nfe cannot be chosen with a custom sigma list (its length fixes the steps)")
        steps, final_zero = resolve_nfe(solver, nfe, afs=afs, final_zero=final_zero)
    elif steps is None and not custom:
        raise QACError("give steps or nfe")
    dtype = state_dtype(noise.device)
    sigmas = make_sigmas(schedule, steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho,
                         final_zero=final_zero, device=noise.device, dtype=dtype)
    counted = CountingCall(denoise)
    traj: list[Tensor] | None = [] if return_trajectory else None
    opts = dict(solver_opts)
    if entry.afs:
        opts["afs"] = afs
    if entry.stochastic:
        opts["generator"] = generator
    if entry.nfe is None:
        opts["stats"] = opts.get("stats") if opts.get("stats") is not None else {}
    x = noise.to(dtype) * sigmas[0]
    out = entry.fn(counted, x, sigmas, callback=listener(callback, traj), **opts)  # caller decides about no_grad
    zero = bool(sigmas[-1] == 0)
    if entry.nfe is not None and counted.calls != entry.nfe(len(sigmas) - 1, afs, zero):
        raise RuntimeError(f"{solver}: counted {counted.calls} evaluations, rule says "
                           f"{entry.nfe(len(sigmas) - 1, afs, zero)}")
    trajectory = torch.stack(traj + [out]) if traj is not None else None
    stats = opts.get("stats")
    return SampleResult(samples=out, nfe=counted.calls, sigmas=sigmas, solver=solver, trajectory=trajectory,
                        stats=stats)
