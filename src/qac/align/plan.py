"""Which network evaluation belongs to which solver step: found once by a dry run, for any solver.

Solvers are whole-trajectory functions; the aligner trains step by step (docs/design.md §8). The link
between the two is the *evaluation plan*: for a (solver, NFE, AFS, schedule) it lists the nominal sigma of
every evaluation ``k`` and the step ``i`` whose end state ``x_{i+1}`` is the first to depend on it. It is
found by running the solver once on a tiny synthetic denoiser with ``delta`` requiring grad and asking
autograd which offsets each grid state depends on, so no solver needs to describe itself (Heun's corrector
belongs to its step; UniPC's corrector evaluation at ``sigma_{i+1}`` belongs to step ``i``; with AFS the
first step has none).

>>> plan = make_plan("heun", 5, afs=True)
>>> plan.steps, plan.eval_steps
(3, (0, 1, 1, 2, 2))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from qac.align.aligned import AlignedDenoise
from qac.errors import QACError
from qac.sampling import get_solver, sample, steps_for_nfe


@dataclass(frozen=True)
class EvalPlan:
    """A deterministic solver's evaluation layout on one sigma grid (see the module doc)."""

    solver: str
    nfe: int
    steps: int
    afs: bool
    schedule: str
    sigma_min: float
    sigma_max: float
    rho: float | None
    sigmas: tuple[float, ...]
    eval_sigmas: tuple[float, ...]
    eval_steps: tuple[int, ...]

    def evals_of_step(self, i: int) -> list[int]:
        """Evaluation indices whose offsets step ``i`` trains."""
        return [k for k, s in enumerate(self.eval_steps) if s == i]

    def sample_kwargs(self) -> dict[str, Any]:
        """Keywords for :func:`qac.sampling.sample` that rebuild exactly this grid."""
        return {"solver": self.solver, "steps": self.steps, "afs": self.afs, "schedule": self.schedule,
                "sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "rho": self.rho}

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready values (tuples become lists), stored at the top level of the aligner file."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _probe(x: Tensor, sigma: Tensor, noise_sigma: Tensor | None = None) -> Tensor:
    """A smooth synthetic denoiser whose output depends on both x and the level (dry runs only)."""
    return x / (1 + sigma**2) + 0.3 * sigma / (1 + sigma) + 0.1


def make_plan(solver: str, nfe: int, *, afs: bool = False, schedule: str = "polynomial",
              sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float | None = None) -> EvalPlan:
    """The :class:`EvalPlan` of ``solver`` at exactly ``nfe`` evaluations (QACError where none exists)."""
    entry = get_solver(solver)
    if entry.nfe is None:
        raise QACError(f"solver {solver!r} has no fixed evaluation count: it cannot be aligned")
    if entry.stochastic:
        raise QACError(f"solver {solver!r} is stochastic: the aligner supports deterministic solvers")
    afs = bool(afs)
    if afs and not entry.afs:
        raise QACError(f"solver {solver!r} does not support the analytical first step (afs)")
    steps = steps_for_nfe(solver, nfe, afs=afs)
    delta = torch.zeros(nfe, dtype=torch.float64, requires_grad=True)
    seen: list[float] = []

    def base(x: Tensor, sigma: Tensor) -> Tensor:
        seen.append(float(sigma.detach()))
        return _probe(x, sigma)

    states: list[Tensor] = []
    with torch.enable_grad():
        res = sample(AlignedDenoise(base, delta, mode="full"), torch.full((1, 3), 0.7, dtype=torch.float64),
                     solver=solver, steps=steps, afs=afs, schedule=schedule, sigma_min=sigma_min,
                     sigma_max=sigma_max, rho=rho, callback=lambda info: states.append(info["x"]))
        states = states[1:] + [res.samples]  # x_1 .. x_N
        eval_steps = [-1] * nfe
        for i, x in enumerate(states):
            if not x.requires_grad:
                continue
            (grad,) = torch.autograd.grad(x.sum(), delta, retain_graph=True, allow_unused=True)
            if grad is None:
                continue
            for k in torch.nonzero(grad).flatten().tolist():
                if eval_steps[k] < 0:
                    eval_steps[k] = i
    if len(seen) != nfe or min(eval_steps) < 0:  # pragma: no cover - a solver that breaks the contract
        raise RuntimeError(f"{solver}: dry run found {len(seen)} evaluations, steps {eval_steps}")
    return EvalPlan(solver, int(nfe), steps, afs, schedule, float(sigma_min), float(sigma_max), rho,
                    tuple(float(s) for s in res.sigmas.tolist()), tuple(seen), tuple(eval_steps))
