"""ipndm_v and dpmpp_3m: defaults, earlier defaults and exact forms against the published forms, on 12 mixtures.

On the exact Gaussian-mixture bench (``qac.bench.solver_table.row_errors``: 64 per-seed noises, sigma 80 ->
0.002, AFS off, each solver on its peers' grid: polynomial rho = 7 for ipndm_v, logSNR for dpmpp_3m) for the
mixtures ``bench_mixture(dim, seed)``, dim in 2, 4, 8, 16 and seed in 0, 1, 2. For every row and NFE: the worst
and the geometric mean over the 12 mixtures of (row error / published error), the number of mixtures where the
row is worse than published; and the empirical order over NFE 64-512 (least-squares slope, min / median / max).

Run: ``OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/solver_defaults.py`` (~5 min on one core) ->
docs/results/solver_defaults.md and .json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch

from qac.bench.solver_table import BenchRow, empirical_order, row_errors

NFES = (3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 28, 32, 40, 48, 64, 128, 256, 512)
TARGET = (3, 4, 5, 6, 8, 10, 20)
MIXTURES = [(d, s) for d in (2, 4, 8, 16) for s in (0, 1, 2)]
POLY, LOGSNR = ("polynomial", 7.0), ("logsnr", None)

ROWS: dict[str, list[BenchRow]] = {
    "ipndm_v": [
        BenchRow("published (diff-sampler)", "ipndm_v", *POLY, opts={"weights": "published"}),
        BenchRow("default: weights=auto, coarse_h=0.45", "ipndm_v", *POLY),
        BenchRow("earlier default: weights=exact (rho, top_order_h=0.85)", "ipndm_v", *POLY,
                 opts={"weights": "exact"}),
        BenchRow("exact, order 4 (rho, top_order_h=None)", "ipndm_v", *POLY,
                 opts={"weights": "exact", "top_order_h": None}),
        BenchRow("exact in sigma (k-diffusion lms)", "ipndm_v", *POLY,
                 opts={"weights": "exact", "interp": "sigma", "top_order_h": None}),
        *(BenchRow(f"weights=auto, coarse_h={c}", "ipndm_v", *POLY, opts={"coarse_h": c}) for c in (0.6, 1.0)),
    ],
    "dpmpp_3m": [
        BenchRow("published (phi3, always order 3)", "dpmpp_3m", *LOGSNR, opts={"d2_weight": "phi3"}),
        BenchRow("default: d2_weight=auto, weight_h=0.15", "dpmpp_3m", *LOGSNR),
        BenchRow("earlier default: exact, top_order_h=0.35 (2M on long steps)", "dpmpp_3m", *LOGSNR,
                 opts={"d2_weight": "exact", "top_order_h": 0.35}),
        BenchRow("exact weight 2 phi3", "dpmpp_3m", *LOGSNR, opts={"d2_weight": "exact"}),
        *(BenchRow(f"d2_weight=auto, weight_h={c}", "dpmpp_3m", *LOGSNR, opts={"weight_h": c})
          for c in (0.25, 0.35, 0.5)),
    ],
}


def _summary(errs: dict[tuple[int, int], dict[str, dict[int, float | None]]], rows: list[BenchRow]) -> dict:
    pub = rows[0].label
    out = {}
    for row in rows:
        ratios = {n: [e[row.label][n] / e[pub][n] for e in errs.values()] for n in NFES}  # type: ignore[operator]
        orders = [empirical_order(e[row.label]) for e in errs.values()]
        out[row.label] = {
            "worst": {n: max(r) for n, r in ratios.items()},
            "gmean": {n: math.exp(statistics.fmean(math.log(v) for v in r)) for n, r in ratios.items()},
            "worse": {n: sum(v > 1 + 1e-12 for v in r) for n, r in ratios.items()},
            "order": [min(orders), statistics.median(orders), max(orders)],  # type: ignore[type-var]
        }
    return out


def _markdown(name: str, summ: dict) -> list[str]:
    head = "| row | | " + " | ".join(str(n) for n in NFES) + " | order 64–512 (min / median / max) |"
    lines = [f"### {name}", "", head, "|---|---|" + "---|" * len(NFES) + "---|"]
    for label, s in summ.items():
        o = " / ".join(f"{v:.2f}" for v in s["order"])
        lines.append(f"| {label} | worst | " + " | ".join(f"{s['worst'][n]:.3g}" for n in NFES) + f" | {o} |")
        lines.append("| | gmean | " + " | ".join(f"{s['gmean'][n]:.3g}" for n in NFES) + " | |")
        lines.append("| | worse in | " + " | ".join(str(s["worse"][n]) for n in NFES) + " | |")
    return lines + [""]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/results", help="folder for solver_defaults.md and .json")
    out = Path(parser.parse_args(argv).out)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    result = {}
    for name, rows in ROWS.items():
        errs = {(d, s): row_errors(rows, NFES, dim=d, seed=s) for d, s in MIXTURES}
        result[name] = {"summary": _summary(errs, rows),
                        "errors": {f"{d},{s}": e for (d, s), e in errs.items()}}
    minutes = (time.perf_counter() - t0) / 60
    lines = ["# Solver defaults against the published forms on 12 mixtures", "",
             "`OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/solver_defaults.py` "
             f"({minutes:.1f} min). Exact GMM bench, mixtures `bench_mixture(dim, seed)` for dim 2, 4, 8, 16 and "
             "seed 0, 1, 2; 64 per-seed noises; sigma 80 → 0.002; AFS off; ipndm_v on the polynomial rho = 7 grid, "
             "dpmpp_3m on the logSNR grid (the peers' defaults). Per NFE (columns): the worst and the geometric "
             "mean over the 12 mixtures of (row's RMS error ÷ published form's), and in how many of the 12 the "
             "row is worse than the published form. The target NFEs are 3, 4, 5, 6, 8, 10, 20; (2, 0) is the "
             "mixture of docs/results/gmm_solvers.md, on which the earlier defaults were chosen.", ""]
    for name in ROWS:
        lines += _markdown(name, result[name]["summary"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "solver_defaults.md").write_text("\n".join(lines))
    (out / "solver_defaults.json").write_text(json.dumps(result, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
