"""One definition of "how to sample": :class:`SamplingSpec`, shared by ``qac sample``, ``qac fid calc``,
``qac sweep``, ``qac analyze`` and the Python drivers (docs/design.md §4).

Schedules: a sigma schedule of :data:`qac.sampling.schedules.SCHEDULES`, ``flow`` (the rectified-flow
protocol of :mod:`qac.sampling.flow`, rf models only) or ``auto``: ``flow`` for an rf model whose solver the
protocol runs (euler, heun, rk45), ``polynomial`` otherwise (see :func:`auto_schedule`).

>>> spec = SamplingSpec(solver="heun", nfe=5)
>>> spec.for_formulation("rf").schedule, spec.for_formulation("edm").schedule
('flow', 'polynomial')
>>> SamplingSpec(solver="dpmpp_2m", nfe=5, schedule="flow")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
qac.errors.QACError: schedule 'flow' (the rf protocol) runs solvers euler, heun, rk45; got 'dpmpp_2m' ...
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from qac.errors import QACError
from qac.sampling.flow import FLOW_SOLVERS, get_flow_solver
from qac.sampling.registry import get_solver
from qac.sampling.schedules import SCHEDULES

#: Every schedule name a spec accepts.
SCHEDULE_NAMES: tuple[str, ...] = ("auto", "flow", *SCHEDULES)
CODE_SOURCES: tuple[str, ...] = ("online", "offline", "uniform")
DEFAULT_STEPS = 18
"""Solver steps when neither steps nor NFE is given (EDM's Heun grid: 18 steps, NFE 35 with the final 0)."""


def auto_schedule(formulation: str, solver: str) -> str:
    """``flow`` for an rf model with a protocol solver, else ``polynomial`` (measured: docs/solvers.md)."""
    return "flow" if formulation == "rf" and solver in FLOW_SOLVERS else "polynomial"


@dataclass(frozen=True)
class SamplingSpec:
    """Solver, budget (``steps`` or ``nfe``), schedule and its grid, AFS, solver options, code weights.

    ``opts`` are solver options (``rtol``, ``S_churn``, ...; a dict is accepted and stored as sorted pairs).
    ``codes``: the code weights QAC codes are drawn from (``online``, ``offline`` after ``qac collect``, or
    ``uniform`` over the used codes). Invalid combinations raise QACError on construction.
    """

    solver: str = "heun"
    steps: int | None = None
    nfe: int | None = None
    schedule: str | tuple[float, ...] = "auto"
    afs: bool = False
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float | None = None
    opts: tuple[tuple[str, Any], ...] = ()
    codes: str = "online"

    def __post_init__(self) -> None:
        if isinstance(self.opts, Mapping):
            object.__setattr__(self, "opts", tuple(sorted(self.opts.items())))
        entry = get_solver(self.solver)
        if self.nfe is not None and self.steps is not None:
            raise QACError("give either --nfe or --steps, not both")
        for name in ("nfe", "steps"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise QACError(f"--{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.schedule, str):  # a custom sigma list (checked by make_sigmas)
            object.__setattr__(self, "schedule", tuple(float(v) for v in self.schedule))
        elif self.schedule not in SCHEDULE_NAMES:
            raise QACError(f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULE_NAMES)}")
        if self.codes not in CODE_SOURCES:
            raise QACError(f"code weights must be one of {', '.join(CODE_SOURCES)}, got {self.codes!r}")
        if entry.nfe is None and self.nfe is not None:
            raise QACError(f"solver {self.solver!r} is adaptive and counts its own evaluations: give tolerances "
                           "(--opt rtol=1e-5 --opt atol=1e-5), not --nfe")
        if self.schedule == "flow":
            get_flow_solver(self.solver)
            if self.afs:
                raise QACError("--afs does not apply to schedule 'flow': the rf protocol starts at x_1 = noise "
                               "and its first evaluation is the network's own")

    @property
    def options(self) -> dict[str, Any]:
        """The solver options as a dict."""
        return dict(self.opts)

    def replace(self, **changes: Any) -> SamplingSpec:
        """A copy with ``changes`` (validated again)."""
        return replace(self, **changes)

    def with_default_steps(self, steps: int = DEFAULT_STEPS) -> SamplingSpec:
        """``steps`` when neither a budget nor an adaptive run in ``t`` (rk45 under ``flow``) is given.

        >>> SamplingSpec().with_default_steps().steps, SamplingSpec(nfe=5).with_default_steps().steps
        (18, None)
        """
        if self.steps is not None or self.nfe is not None or (self.solver == "rk45" and self.schedule == "flow"):
            return self
        return self.replace(steps=steps)

    def for_formulation(self, formulation: str) -> SamplingSpec:
        """Resolve ``auto`` for a model of ``formulation`` and refuse ``flow`` for anything but ``rf``."""
        spec = self
        if spec.schedule == "auto":
            spec = spec.replace(schedule=auto_schedule(formulation, spec.solver))
        if spec.schedule == "flow" and formulation != "rf":
            raise QACError(f"schedule 'flow' (the rectified-flow protocol) is for rf models; this run is "
                           f"{formulation!r}: use auto, {', '.join(SCHEDULES)}")
        return spec

    def sample_kwargs(self) -> dict[str, Any]:
        """Keywords for :func:`qac.sampling.generate.generate` (after :meth:`for_formulation`, or with
        ``auto``, which generate resolves itself)."""
        schedule = self.schedule if isinstance(self.schedule, str) else list(self.schedule)
        kw: dict[str, Any] = {"solver": self.solver, "steps": self.steps, "nfe": self.nfe, "schedule": schedule}
        if self.schedule != "flow":
            kw.update(afs=self.afs, sigma_min=self.sigma_min, sigma_max=self.sigma_max, rho=self.rho)
        kw.update(self.options)
        return kw

    def label(self) -> str:
        """A short human-readable description, e.g. ``heun nfe=5 flow``."""
        budget = f"nfe={self.nfe}" if self.nfe is not None else (f"steps={self.steps}" if self.steps else "")
        schedule = self.schedule if isinstance(self.schedule, str) else f"custom[{len(self.schedule)}]"
        parts = [self.solver, budget, schedule, "afs" if self.afs else ""]
        parts += [f"{k}={v}" for k, v in self.opts]
        return " ".join(p for p in parts if p)
