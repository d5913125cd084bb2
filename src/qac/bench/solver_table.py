"""Error vs NFE of every deterministic fixed-step solver on the Gaussian-mixture bench.

>>> rows = solver_error_table([4, 8], dim=2, batch=8, solvers=["euler", "heun"])
>>> sorted(rows["heun"])
[4, 8]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from qac.bench.gmm import bench_mixture, reference_solution
from qac.errors import QACError
from qac.sampling import SOLVERS, sample
from qac.util import per_seed_randn


def table_solvers() -> list[str]:
    """Solvers that belong in an error-vs-NFE table: deterministic and with a fixed NFE rule."""
    return [n for n, e in SOLVERS.items() if e.nfe is not None and not e.stochastic]


def solver_error_table(nfes: Sequence[int], *, dim: int = 2, batch: int = 64, seed: int = 0,
                       solvers: Sequence[str] | None = None, afs: bool = False,
                       schedule: str = "polynomial") -> dict[str, dict[int, float | None]]:
    """RMS error against the rk45 reference (tol 1e-10) for each solver and NFE; ``None`` where impossible.

    Noise rows are per-seed (seeds 0..batch-1); the mixture is :func:`bench_mixture(dim, seed=seed)`.
    """
    names = list(solvers) if solvers is not None else table_solvers()
    for n in names:
        if n not in SOLVERS:
            raise QACError(f"unknown solver {n!r}")
    gmm = bench_mixture(dim=dim, seed=seed)
    noise = per_seed_randn(range(batch), (dim,), dtype=torch.float64)
    ref = reference_solution(gmm.denoise, noise)
    out: dict[str, dict[int, float | None]] = {}
    for name in names:
        out[name] = {}
        for nfe in nfes:
            try:
                res = sample(gmm.denoise, noise, solver=name, nfe=nfe, afs=afs, schedule=schedule)
            except QACError:
                out[name][nfe] = None
                continue
            out[name][nfe] = (res.samples - ref).pow(2).mean().sqrt().item()
    return out


def markdown_table(rows: dict[str, dict[int, float | None]]) -> str:
    """A markdown table: one row per solver, one column per NFE ("—" where the NFE is impossible)."""
    nfes = sorted({n for r in rows.values() for n in r})
    lines = ["| solver | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
             "|---|" + "---|" * len(nfes)]
    for name, r in rows.items():
        cells = ["—" if r.get(n) is None else f"{r[n]:.2e}" for n in nfes]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
