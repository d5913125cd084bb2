"""The sampling options of ``qac sample``, ``qac fid calc``, ``qac sweep`` and ``qac analyze``, defined once.

:func:`sampling_options` adds the options to a command and hands it one :class:`SamplingOptions` argument
(``sampling``) instead of ten; ``sampling.spec()`` builds the :class:`qac.sampling.spec.SamplingSpec`
(QACError for invalid combinations, printed as one ``error:`` line). In ``qac sweep`` ``--solver``,
``--nfe`` and ``--steps`` take comma-separated lists (``sampling.solvers``, ``sampling.budgets()``).
No torch import at module level (the spec module is imported when a command runs).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from qac.cli.params import POSITIVE_INTS
from qac.errors import QACError

#: Option names added by :func:`sampling_options` (a test checks that all four commands list them).
OPTION_NAMES = ("--solver", "--steps", "--nfe", "--schedule", "--afs", "--sigma-min", "--sigma-max", "--rho",
                "--opt", "--codes")
_KEYS = ("solver", "steps", "nfe", "schedule", "afs", "sigma_min", "sigma_max", "rho", "solver_opts", "codes")
SCHEDULE_HELP = ("auto (rf runs: the rf protocol 'flow' for euler/heun/rk45, else polynomial), flow (rf "
                 "protocol: uniform t from t = 1), polynomial, logsnr or time_uniform")


def parse_solver_opts(items: tuple[str, ...]) -> dict[str, float | int | str | None]:
    """``("S_churn=40", "top_order_h=none")`` -> ``{"S_churn": 40, "top_order_h": None}`` (``none`` switches off)."""
    opts: dict[str, float | int | str | None] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise QACError(f"solver option {item!r} must look like NAME=VALUE")
        if value.lower() == "none":
            opts[key] = None
            continue
        for cast in (int, float):
            try:
                opts[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            opts[key] = value
    return opts


@dataclass(frozen=True)
class SamplingOptions:
    """The raw values of the shared options of one command invocation."""

    solver: str
    steps: Any
    nfe: Any
    schedule: str
    afs: bool
    sigma_min: float
    sigma_max: float
    rho: float | None
    solver_opts: tuple[str, ...]
    codes: str
    lists: bool = False

    @property
    def solvers(self) -> list[str]:
        """The comma-separated ``--solver`` list (sweep)."""
        out = [s.strip() for s in self.solver.split(",") if s.strip()]
        if not out:
            raise QACError("give at least one --solver")
        return out

    def spec(self, *, solver: str | None = None, nfe: int | None = None, steps: int | None = None) -> Any:
        """The :class:`qac.sampling.spec.SamplingSpec` (``solver``/``nfe``/``steps`` override the options)."""
        from qac.sampling.spec import SamplingSpec

        if not self.lists:
            nfe = self.nfe if nfe is None else nfe
            steps = self.steps if steps is None else steps
        return SamplingSpec(solver=solver or self.solver, steps=steps, nfe=nfe, schedule=self.schedule,
                            afs=self.afs, sigma_min=self.sigma_min, sigma_max=self.sigma_max, rho=self.rho,
                            opts=parse_solver_opts(self.solver_opts), codes=self.codes)

    def budgets(self) -> tuple[str, list[int]]:
        """Sweep: ``("nfe", [...])`` or ``("steps", [...])``."""
        if self.nfe is not None and self.steps is not None:
            raise QACError("give either --nfe or --steps, not both")
        return ("steps", list(self.steps)) if self.steps is not None else ("nfe", list(self.nfe))


def sampling_options(*, solver: str = "heun", lists: bool = False, nfe_default: str | None = None,
                     steps_help: str = "solver steps (instead of --nfe)") -> Callable:
    """Add the shared sampling options to a click command; it receives ``sampling: SamplingOptions``.

    ``lists`` (sweep): ``--solver``, ``--nfe`` and ``--steps`` are comma-separated lists; ``nfe_default`` is
    the default of the ``--nfe`` list.
    """
    budget_type = POSITIVE_INTS if lists else click.IntRange(min=1)
    options = [
        click.option("--solver", default=solver, show_default=True,
                     help="solver name(s) (`qac solvers` lists them)" + (", comma-separated" if lists else "")),
        click.option("--steps", default=None, type=budget_type, help=steps_help),
        click.option("--nfe", default=nfe_default, type=budget_type,
                     help="network evaluations per sample" + (" (comma-separated)" if lists else "")
                     + "; heun/dpm2 at an odd NFE end at sigma = 0 with a plain Euler step (EDM)"),
        click.option("--schedule", default="auto", show_default=True, help=SCHEDULE_HELP),
        click.option("--afs", is_flag=True, help="analytical first step (saves one evaluation; sigma schedules)"),
        click.option("--sigma-min", type=float, default=0.002, show_default=True,
                     help="smallest sigma of a sigma schedule"),
        click.option("--sigma-max", type=float, default=80.0, show_default=True,
                     help="largest sigma of a sigma schedule"),
        click.option("--rho", type=float, default=None, help="schedule exponent (default: the schedule's, 7)"),
        click.option("--opt", "solver_opts", multiple=True,
                     help="solver option NAME=VALUE, repeatable (rk45: rtol, atol, first_step)"),
        click.option("--codes", type=click.Choice(["online", "offline", "uniform"]), default="online",
                     show_default=True,
                     help="code weights to draw QAC codes from: online EMA histogram, offline (`qac collect`), or "
                          "uniform over the used codes"),
    ]

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            raw = {k: kwargs.pop(k) for k in _KEYS}
            return fn(sampling=SamplingOptions(**raw, lists=lists), **kwargs)

        for opt in reversed(options):
            wrapper = opt(wrapper)
        return wrapper

    return decorate
