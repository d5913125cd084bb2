"""The one solver registry: name -> :class:`SolverEntry` (function, order, NFE rule, AFS, noise).

NFE rules (docs/design.md §4), with N = steps = len(sigmas) - 1, A = [afs], Z = [last sigma == 0]:

- one evaluation per step (euler, dpmpp_2m, dpmpp_3m, unipc, deis, ipndm, ipndm_v, euler_maruyama): N - A
- two per step (heun, dpm2, edm_sde): 2N - A - Z (a final step to sigma = 0 is plain Euler)
- rk45: adaptive, counted at run time
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qac.errors import QACError
from qac.sampling import solvers as S


@dataclass(frozen=True)
class SolverEntry:
    """One solver: ``fn(denoise, x, sigmas, *, callback=None, **opts) -> x`` and its bookkeeping.

    ``order`` is the nominal convergence order with default options; ``nfe(steps, afs, final_zero)`` gives the
    exact number of denoiser calls (``None`` for adaptive solvers); ``afs`` says whether the analytical first
    step applies; ``stochastic`` solvers take a ``generator``.
    """

    name: str
    fn: Callable
    order: int
    nfe_rule: str
    nfe: Callable[[int, bool, bool], int] | None
    afs: bool
    stochastic: bool
    description: str


def _one_per_step(steps: int, afs: bool, final_zero: bool) -> int:
    return steps - int(afs)


def _two_per_step(steps: int, afs: bool, final_zero: bool) -> int:
    return 2 * steps - int(afs) - int(final_zero)


_ONE, _TWO = "N - [afs]", "2N - [afs] - [final 0]"

SOLVERS: dict[str, SolverEntry] = {
    e.name: e
    for e in (
        SolverEntry("euler", S.euler, 1, _ONE, _one_per_step, True, False, "Euler = DDIM = DPM-Solver-1"),
        SolverEntry("heun", S.heun, 2, _TWO, _two_per_step, True, False, "EDM Heun (trapezoidal corrector)"),
        SolverEntry("dpm2", S.dpm2, 2, _TWO, _two_per_step, True, False, "DPM-Solver-2 (lambda midpoint)"),
        SolverEntry("dpmpp_2m", S.dpmpp_2m, 2, _ONE, _one_per_step, True, False, "DPM-Solver++(2M)"),
        SolverEntry("dpmpp_3m", S.dpmpp_3m, 3, _ONE, _one_per_step, True, False, "DPM-Solver++(3M), blended weight"),
        SolverEntry("unipc", S.unipc, 3, _ONE, _one_per_step, True, False, "UniPC-bh2 predictor-corrector"),
        SolverEntry("deis", S.deis, 4, _ONE, _one_per_step, True, False, "DEIS-tAB (VP-time Lagrange AB)"),
        SolverEntry("ipndm", S.ipndm, 4, _ONE, _one_per_step, True, False, "iPNDM, fixed AB coefficients"),
        SolverEntry("ipndm_v", S.ipndm_v, 4, _ONE, _one_per_step, True, False, "variable-step AB, auto weights"),
        SolverEntry("rk45", S.rk45, 5, "adaptive (counted)", None, False, False, "Dormand-Prince 5(4)"),
        SolverEntry("edm_sde", S.edm_sde, 2, _TWO, _two_per_step, True, True, "EDM churn sampler (Alg. 2)"),
        SolverEntry("euler_maruyama", S.euler_maruyama, 1, _ONE, _one_per_step, True, True,
                    "Euler-Maruyama, reverse VE SDE"),
    )
}


def get_solver(name: str) -> SolverEntry:
    """The registry entry for ``name`` (QACError listing the choices if unknown).

    >>> get_solver("heun").nfe(18, False, True)
    35
    """
    try:
        return SOLVERS[name]
    except KeyError:
        raise QACError(f"unknown solver {name!r}; choose from {', '.join(SOLVERS)}") from None
