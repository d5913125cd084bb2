"""Error vs NFE of the deterministic fixed-step solvers on the Gaussian-mixture bench.

Two views: every solver on one grid (:func:`solver_error_table`, what ``qac bench-solvers`` prints), and
every solver on its peers' default grid next to the published forms (:func:`peer_rows`, :func:`row_errors`;
``python -m qac.bench.solver_table --out docs/results`` writes ``gmm_solvers.md``). The peers' grids are
diff-sampler's defaults: polynomial rho = 7 for the Euler/Heun/DPM-2/Adams solvers, logSNR for
DPM-Solver++ and UniPC, time-uniform rho = 2 for DEIS.

>>> rows = solver_error_table([4, 8], dim=2, batch=8, solvers=["euler", "heun"])
>>> sorted(rows["heun"])
[4, 8]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from qac.bench.gmm import bench_mixture, reference_solution
from qac.bench.published import ipndm_v_published
from qac.errors import QACError
from qac.sampling import SOLVERS, make_sigmas, sample, steps_for_nfe
from qac.util import per_seed_randn

PEER_GRIDS: dict[str, tuple[str, float | None]] = {
    "euler": ("polynomial", 7.0), "heun": ("polynomial", 7.0), "dpm2": ("polynomial", 7.0),
    "ipndm": ("polynomial", 7.0), "ipndm_v": ("polynomial", 7.0),
    "dpmpp_2m": ("logsnr", None), "dpmpp_3m": ("logsnr", None), "unipc": ("logsnr", None),
    "deis": ("time_uniform", 2.0),
}
"""diff-sampler's default grid per solver (diff-sampler's README and launch scripts; see docs/solvers.md)."""

TARGET_NFES = (3, 4, 5, 6, 8, 10, 20)
ORDER_NFES = (64, 128, 256, 512)


@dataclass(frozen=True)
class BenchRow:
    """One table row: ``solver`` (registry name: its NFE rule) with ``opts`` on ``schedule``/``rho``.

    ``fn`` replaces the registry's function (reference implementations); ``reference_of`` names the row
    whose published form this is.
    """

    label: str
    solver: str
    schedule: str = "polynomial"
    rho: float | None = None
    opts: dict[str, Any] = field(default_factory=dict)
    fn: Callable[..., torch.Tensor] | None = None
    reference_of: str | None = None


def table_solvers() -> list[str]:
    """Solvers that belong in an error-vs-NFE table: deterministic and with a fixed NFE rule."""
    return [n for n, e in SOLVERS.items() if e.nfe is not None and not e.stochastic]


def reference_rows() -> list[BenchRow]:
    """The published forms that differ from our defaults, on their peers' grids."""
    return [
        BenchRow("ipndm_v (diff-sampler, published)", "ipndm_v", "polynomial", 7.0, fn=ipndm_v_published,
                 reference_of="ipndm_v"),
        BenchRow("dpmpp_3m (published: phi3, always order 3)", "dpmpp_3m", "logsnr",
                 opts={"d2_weight": "phi3", "top_order_h": None}, reference_of="dpmpp_3m"),
    ]


def peer_rows(solvers: Sequence[str] | None = None, references: bool = True) -> list[BenchRow]:
    """Each solver (default: all of :data:`PEER_GRIDS`) on its peers' grid, then the reference rows."""
    names = list(solvers) if solvers is not None else list(PEER_GRIDS)
    rows = [BenchRow(n, n, *PEER_GRIDS[n]) for n in names]
    if references:
        rows += [r for r in reference_rows() if r.reference_of in names]
    return rows


def _run(row: BenchRow, denoise: Callable, noise: torch.Tensor, nfe: int, afs: bool) -> torch.Tensor:
    if row.fn is None:
        return sample(denoise, noise, solver=row.solver, nfe=nfe, afs=afs, schedule=row.schedule,
                      rho=row.rho, **row.opts).samples
    steps = steps_for_nfe(row.solver, nfe, afs=afs)
    sigmas = make_sigmas(row.schedule, steps, rho=row.rho)
    return row.fn(denoise, noise.to(torch.float64) * sigmas[0], sigmas, afs=afs, **row.opts)


def row_errors(rows: Sequence[BenchRow], nfes: Sequence[int], *, dim: int = 2, batch: int = 64, seed: int = 0,
               afs: bool = False) -> dict[str, dict[int, float | None]]:
    """RMS error against the rk45 reference (tol 1e-10) per row label and NFE; ``None`` where impossible.

    Noise rows are per-seed (seeds 0..batch-1); the mixture is ``bench_mixture(dim, seed=seed)``.
    """
    gmm = bench_mixture(dim=dim, seed=seed)
    noise = per_seed_randn(range(batch), (dim,), dtype=torch.float64)
    ref = reference_solution(gmm.denoise, noise)
    out: dict[str, dict[int, float | None]] = {}
    for row in rows:
        if row.solver not in SOLVERS:
            raise QACError(f"unknown solver {row.solver!r}")
        out[row.label] = {}
        for nfe in nfes:
            try:
                res = _run(row, gmm.denoise, noise, nfe, afs)
            except QACError:
                out[row.label][nfe] = None
                continue
            out[row.label][nfe] = (res - ref).pow(2).mean().sqrt().item()
    return out


def solver_error_table(nfes: Sequence[int], *, dim: int = 2, batch: int = 64, seed: int = 0,
                       solvers: Sequence[str] | None = None, afs: bool = False,
                       schedule: str = "polynomial") -> dict[str, dict[int, float | None]]:
    """Every solver (default options) on one ``schedule`` (``"peer"``: each on its peers' grid)."""
    names = list(solvers) if solvers is not None else table_solvers()
    for n in names:
        if n not in SOLVERS:
            raise QACError(f"unknown solver {n!r}")
    if schedule == "peer":
        rows = [BenchRow(n, n, *PEER_GRIDS.get(n, ("polynomial", None))) for n in names]
    else:
        rows = [BenchRow(n, n, schedule) for n in names]
    return row_errors(rows, nfes, dim=dim, batch=batch, seed=seed, afs=afs)


def empirical_order(errs: dict[int, float | None], nfes: Sequence[int] = ORDER_NFES) -> float | None:
    """Least-squares slope of ``-log(error)`` against ``log(NFE)`` over ``nfes`` (``None`` if missing)."""
    pts = [(math.log(n), math.log(errs[n])) for n in nfes if errs.get(n)]  # type: ignore[arg-type]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    return -sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def markdown_table(rows: dict[str, dict[int, float | None]]) -> str:
    """A markdown table: one row per solver, one column per NFE ("—" where the NFE is impossible)."""
    nfes = sorted({n for r in rows.values() for n in r})
    lines = ["| solver | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
             "|---|" + "---|" * len(nfes)]
    for name, r in rows.items():
        cells = ["—" if r.get(n) is None else f"{r[n]:.2e}" for n in nfes]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def peer_markdown(rows: Sequence[BenchRow], errs: dict[str, dict[int, float | None]]) -> str:
    """The peer-grid table with the measured order (NFE 64–512) and, for solvers with a published
    reference row, the worst ratio ours / published over :data:`TARGET_NFES`."""
    nfes = sorted({n for r in errs.values() for n in r})
    refs = {r.reference_of: r.label for r in rows if r.reference_of}
    head = "| solver | grid | " + " | ".join(f"{n}" for n in nfes) + " | order | max ratio vs published |"
    lines = ["NFE columns; RMS error.\n", head, "|---|---|" + "---|" * (len(nfes) + 2)]
    for row in rows:
        e = errs[row.label]
        cells = ["—" if e.get(n) is None else f"{e[n]:.2e}" for n in nfes]
        order = empirical_order(e)
        ratio = "—"
        if row.label in refs:
            pub = errs[refs[row.label]]
            ratios = [e[n] / pub[n] for n in TARGET_NFES if e.get(n) and pub.get(n)]  # type: ignore[operator]
            ratio = f"{max(ratios):.3f}" if ratios else "—"
        grid = row.schedule + (f" rho={row.rho:g}" if row.rho is not None else "")
        lines.append(f"| {row.label} | {grid} | " + " | ".join(cells)
                     + f" | {'—' if order is None else f'{order:.2f}'} | {ratio} |")
    return "\n".join(lines) + "\n"


def plot_errors(rows: dict[str, dict[int, float | None]], path: Path, title: str) -> None:
    """Error vs NFE on log-log axes, one line per row (dashed: published forms); ImportError without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.8))
    for name, r in rows.items():
        pts = sorted((n, e) for n, e in r.items() if e is not None)
        if pts:
            ax.loglog([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=name,
                      ls="--" if "published" in name else "-")
    ax.set_xlabel("NFE")
    ax.set_ylabel("RMS error vs reference ODE solution")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    """Write ``gmm_solvers.md`` (+ ``.png`` when matplotlib is installed) into ``--out``."""
    ap = argparse.ArgumentParser(prog="python -m qac.bench.solver_table", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    cmd = f"PYTHONPATH=src python -m qac.bench.solver_table --out {args.out} --batch {args.batch} --seed {args.seed}"
    torch.set_num_threads(1)
    rows = peer_rows()
    errs = row_errors(rows, TARGET_NFES + ORDER_NFES, batch=args.batch, seed=args.seed)
    one_grid = solver_error_table([3, 4, 5, 6, 8, 10, 16, 32, 64, 128], batch=args.batch, seed=args.seed)
    text = (
        "# GMM bench: error vs NFE\n\n"
        f"Generated by `{cmd}`. RMS error of the samples against an rk45 reference (rtol = atol = 1e-10) on "
        f"`bench_mixture(dim=2, seed={args.seed})` with {args.batch} per-seed noises, sigma 80 -> 0.002, "
        "float64, AFS off, default options. \"order\" = least-squares slope of log error vs log NFE over "
        "NFE 64–512; \"max ratio vs published\" = the worst of ours / published over NFE 3, 4, 5, 6, 8, 10, 20. "
        "— = that NFE is impossible for the solver.\n\n"
        "## Each solver on its peers' default grid, with the published forms\n\n"
        "diff-sampler's grids: polynomial rho = 7 (Euler, Heun, DPM-2, iPNDM, iPNDM_v), logSNR (DPM-Solver++, "
        "UniPC), time-uniform rho = 2 (DEIS). Solvers without a reference row are the published forms "
        "themselves. See docs/solvers.md for the defaults and the defects of the published forms.\n\n"
        + peer_markdown(rows, errs)
        + "\n## All solvers on one grid (polynomial, rho = 7)\n\n"
        "Same bench; this is what `qac bench-solvers --nfe 3,4,5,6,8,10,16,32,64,128 --no-afs` prints.\n\n"
        + markdown_table(one_grid)
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gmm_solvers.md").write_text(text)
    print(text, end="")
    try:
        plot_errors(errs, args.out / "gmm_solvers.png", "GMM bench, peers' default grids (dashed: published forms)")
    except ImportError:
        print("matplotlib missing: no plot")


if __name__ == "__main__":
    main()
