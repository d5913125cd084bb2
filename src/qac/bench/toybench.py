"""CPU 2-D toy benchmark: baseline (independent coupling, I-CFM) vs QAC (docs/design.md §11).

Both methods share everything but the condition: rectified-flow formulation (t ~ U, v-loss), the package
MLP, Adam, batch, steps, seeds. Per (data set, method, seed) :func:`run_one` trains a run and measures

* L_CFM: per-dimension test loss on fresh data, averaged over a midpoint t-grid, under the training coupling
  (QAC: code from E(x₀); RNE: x₁ ~ q(x₁ | x₀) from its encoder; VAE: the code's posterior mean from E(x₀));
* curvature: RNE estimator on Euler with K = 100 (and K = 8) on the RF protocol's uniform t grid from t = 1;
* energy distance (primary few-step metric) at Euler NFE ∈ {1, 2, 4, 8, 100} (RF protocol) against fresh
  data, and the data-vs-data floor;
* RK45 NFE: adaptive Dormand–Prince of the RF protocol in t from t = 1 (x_1 = n) to 0, rtol = atol = tol,
  mean evaluations and rejected steps per sample over ``rk45_points`` seeds, each solved alone (docs/solvers.md);
* code perplexity exp(−Σ p log p) and codes with p > 1e-3 (QAC), from the online EMA weights.

>>> cfg = ToyBenchConfig(datasets=("moons",), seeds=(0,), steps=50, n_eval=200)  # doctest: +SKIP
>>> rows = run_benchmark(cfg, "/tmp/toy")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qac.bench.runs import RunSpec, train_spec
from qac.eval.analysis import code_denoise_fn, training_coupling, trajectory_curvature
from qac.metrics.cfm import cfm_loss_curve
from qac.metrics.toy import energy_distance
from qac.model import SteMode

#: Method name -> ``--cond``; rne, qac_rne and vae use their condition's default KL weight unless
#: ``ToyBenchConfig.beta`` sets one.
METHODS = {"icfm": "none", "qac": "qac", "rne": "rne", "qac_rne": "qac+rne", "vae": "vae"}


@dataclass(frozen=True)
class ToyBenchConfig:
    """Budget and protocol knobs; defaults follow §7 scaled to a ~15-minute CPU budget."""

    datasets: tuple[str, ...] = ("8gaussians", "moons", "checkerboard")
    methods: tuple[str, ...] = ("icfm", "qac")
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 1200
    batch_size: int = 256
    lr: float = 1e-3
    levels: int = 4
    code_dim: int = 2
    ste: SteMode = "identity"
    beta: float | None = None
    train_points: int = 50_000
    n_eval: int = 3000
    lcfm_points: int = 8000
    lcfm_ts: int = 10
    nfes: tuple[int, ...] = (1, 2, 4, 8, 100)
    curvature_steps: tuple[int, ...] = (100, 8)
    sigma_max: float = 999.0
    rk45_points: int = 32
    rk45_tol: float = 1e-5


def train_toy(cfg: ToyBenchConfig, dataset: str, method: str, seed: int, run_dir: Path) -> float:
    """Train one run (rf formulation, package MLP; recipe of :class:`qac.bench.runs.RunSpec`); wall seconds."""
    spec = RunSpec(data=f"toy:{dataset}:{cfg.train_points}", cond=METHODS[method], seed=seed, steps=cfg.steps,
                   batch_size=cfg.batch_size, levels=cfg.levels, code_dim=cfg.code_dim, arch="mlp", lr=cfg.lr,
                   ste=cfg.ste, beta=cfg.beta)
    return train_spec(spec, run_dir)


def rk45_nfe(run: Any, seeds: Sequence[int], tol: float, code_weights: Any = None) -> dict[str, float]:
    """RK45 of the RF protocol (Dormand–Prince in t from t = 1 to 0, rtol = atol = ``tol``), each seed solved
    on its own: mean evaluations, accepted and rejected steps per sample (``nfe``, ``accepted``, ``rejected``).

    ``code_weights``: where codes are drawn from (default: the run's online weights). Per sample, because a
    batch shares its steps and so spends what its worst member needs (docs/solvers.md).
    """
    from qac.sampling.generate import generate

    weights = run.code_weights() if code_weights is None else code_weights
    out = generate(run.model, list(seeds), code_weights=weights, solver="rk45", schedule="flow",
                   rtol=tol, atol=tol, batch_size=1)
    return {k: v / len(seeds) for k, v in (out.stats or {}).items()}


def mean_lcfm(run: Any, x_test: torch.Tensor, num_ts: int, seed: int = 7) -> float:
    """L_CFM per dimension on ``x_test`` averaged over a ``num_ts``-point midpoint t-grid, under the training
    coupling (QAC: code E(x0); RNE: x1 ~ q(x1 | x0); VAE: the code's posterior mean)."""
    ts = [(k + 0.5) / num_ts for k in range(num_ts)]
    curve = cfm_loss_curve(code_denoise_fn(run.model), x_test, ts, generator=torch.Generator().manual_seed(seed),
                           batch_size=4096, coupling=training_coupling(run.model))
    return float(np.mean(list(curve.values())))


def evaluate_toy(run: Any, cfg: ToyBenchConfig, dataset: str, seed: int) -> dict[str, Any]:
    """All §7 metrics of one trained toy run (evaluation seeds fixed, independent of the training seed)."""
    from qac.data import sample_toy
    from qac.sampling.generate import generate
    from qac.util import seed_generator

    out: dict[str, Any] = {}
    out["lcfm"] = mean_lcfm(run, sample_toy(dataset, cfg.lcfm_points, seed_generator(10**6 + 1)), cfg.lcfm_ts)
    eval_seeds = list(range(cfg.n_eval))
    for k in cfg.curvature_steps:
        cur = trajectory_curvature(run, eval_seeds, steps=k, sigma_max=cfg.sigma_max)
        out[f"curv{k}"] = cur["curvature"]
    ref = sample_toy(dataset, 2 * cfg.n_eval, seed_generator(10**6 + 2))
    out["ed_floor"] = energy_distance(ref[:cfg.n_eval], ref[cfg.n_eval:])
    weights = run.code_weights()
    for nfe in cfg.nfes:
        g = generate(run.model, eval_seeds, code_weights=weights, solver="euler", nfe=nfe, schedule="flow",
                     batch_size=4096)
        out[f"ed{nfe}"] = energy_distance(g.samples, ref[:cfg.n_eval])
    rk = rk45_nfe(run, list(range(cfg.rk45_points)), cfg.rk45_tol)
    out["rk45_nfe"], out["rk45_accepted"], out["rk45_rejected"] = rk["nfe"], rk["accepted"], rk["rejected"]
    if weights is not None:
        out["perplexity"] = weights.perplexity()
        out["codes_used"] = weights.num_used(1e-3)
    return out


def _finished_train_seconds(cfg: ToyBenchConfig, run_dir: Path) -> float | None:
    """Training seconds of a complete earlier run of this configuration in ``run_dir`` (from its logged
    throughput), or None when there is none; an incomplete folder is removed."""
    import json
    import shutil

    if not run_dir.exists():
        return None
    stats = run_dir / "stats.jsonl"
    lines = [json.loads(line) for line in stats.read_text().splitlines()] if stats.exists() else []
    if (run_dir / "checkpoint").exists() and lines and lines[-1]["step"] == cfg.steps:
        seconds, prev = 0.0, 0
        for rec in lines:
            seconds += (rec["step"] - prev) * cfg.batch_size / rec["img_per_s"]
            prev = rec["step"]
        return seconds
    shutil.rmtree(run_dir)
    return None


def run_one(cfg: ToyBenchConfig, dataset: str, method: str, seed: int, workdir: str | Path,
            reuse: bool = False) -> dict[str, Any]:
    """Train and evaluate one (data set, method, seed); returns a flat record.

    ``reuse=True`` evaluates a complete earlier training run in the same ``workdir`` instead of retraining.
    """
    from qac.train.run import load_run

    torch.manual_seed(seed)
    run_dir = Path(workdir) / f"{dataset}-{method}-s{seed}"
    train_s = _finished_train_seconds(cfg, run_dir) if reuse else None
    if train_s is None:
        train_s = train_toy(cfg, dataset, method, seed, run_dir)
    t0 = time.perf_counter()
    run = load_run(run_dir, device="cpu")
    rec = {"dataset": dataset, "method": method, "seed": seed, "train_s": train_s}
    rec.update(evaluate_toy(run, cfg, dataset, seed))
    rec["eval_s"] = time.perf_counter() - t0
    return rec


def run_benchmark(cfg: ToyBenchConfig, workdir: str | Path, log: Any = print) -> list[dict[str, Any]]:
    """Every (data set, method, seed) of ``cfg`` in order; ``log`` gets one line per run."""
    rows = []
    for ds in cfg.datasets:
        for method in cfg.methods:
            for seed in cfg.seeds:
                rec = run_one(cfg, ds, method, seed, workdir)
                log(f"{ds} {method} seed {seed}: curv100 {rec.get('curv100', float('nan')):.4f} "
                    f"ed2 {rec['ed2']:.4f} ({rec['train_s']:.0f}+{rec['eval_s']:.0f} s)")
                rows.append(rec)
    return rows


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def summarize(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[str, tuple[float, float]]]:
    """{(dataset, method): {column: (mean, std over seeds)}} for every numeric column."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["method"]), []).append(r)
    skip = {"dataset", "method", "seed"}
    return {key: {c: _mean_std([r[c] for r in rs]) for c in rs[0] if c not in skip and c in rs[-1]}
            for key, rs in groups.items()}


def ratio(summary: dict, dataset: str, column: str, num: str = "qac",
          den: str = "icfm") -> tuple[float, float]:
    """QAC ÷ baseline of a column's seed means, with a first-order std (relative errors in quadrature)."""
    (a, sa), (b, sb) = summary[(dataset, num)][column], summary[(dataset, den)][column]
    r = a / b
    return r, abs(r) * math.sqrt((sa / a) ** 2 + (sb / b) ** 2) if a and b else float("nan")


def _fmt(ms: tuple[float, float]) -> str:
    m, s = ms
    if abs(m) >= 100:
        return f"{m:.0f} ± {s:.0f}"
    return f"{m:.3g} ± {s:.2g}"


def markdown_report(rows: Sequence[dict[str, Any]], cfg: ToyBenchConfig, seconds: float,
                    notes: str = "") -> str:
    """The results page: one table per data set (mean ± std over seeds) and the QAC ÷ baseline ratios."""
    summ = summarize(rows)
    cols = ["lcfm", *[f"curv{k}" for k in cfg.curvature_steps], *[f"ed{n}" for n in cfg.nfes], "ed_floor",
            "rk45_nfe", "rk45_rejected", "perplexity", "codes_used", "train_s"]
    heads = ["L_CFM", *[f"Curv(K={k})" for k in cfg.curvature_steps], *[f"ED@{n}" for n in cfg.nfes],
             "ED floor", "RK45 NFE", "RK45 rejected", "perplexity", "codes > 1e-3", "train s"]
    lines = ["# 2-D toy benchmark: I-CFM baseline vs QAC", "",
             "Written by `benchmarks/toy2d.py` (protocol: docs/design.md §11, scaled to the CPU "
             "budget). Mean ± std over seeds " + ", ".join(map(str, cfg.seeds)) + ".", "",
             f"Set-up: rectified-flow formulation (t ~ U), package MLP, Adam lr {cfg.lr}, batch "
             f"{cfg.batch_size}, {cfg.steps} steps, EMA weights; QAC code: d = {cfg.code_dim}, "
             f"L = {cfg.levels} "
             f"({cfg.levels ** cfg.code_dim} codes), {cfg.ste} straight-through gradient, codes sampled from "
             "the online EMA histogram. "
             f"L_CFM per dimension on {cfg.lcfm_points} fresh points, mean over a {cfg.lcfm_ts}-point "
             f"midpoint "
             f"t-grid. Curvature: RNE estimator, Euler on the RF protocol's uniform t grid from t = 1 "
             f"from {cfg.n_eval} prior draws. ED@k: unbiased energy distance, Euler with k steps (NFE = k) on "
             f"the same protocol, {cfg.n_eval} vs {cfg.n_eval} fresh points; ED floor = data vs data. RK45: "
             f"Dormand–Prince in t from t = 1 to 0, rtol = atol = {cfg.rk45_tol:g}, mean per sample over "
             f"{cfg.rk45_points} seeds each solved alone (NFE = 1 + 6 × attempted steps; docs/solvers.md explains "
             f"why a trained MLP needs ~450 at 1e-5). Wall time of the last invocation "
             f"{seconds / 60:.1f} min; "
             f"summed over runs: training {sum(r['train_s'] for r in rows) / 60:.1f} min, evaluation "
             f"{sum(r.get('eval_s', 0.0) for r in rows) / 60:.1f} min (single-threaded processes on a shared "
             f"2-core machine).", ""]
    for ds in cfg.datasets:
        lines += [f"## {ds}", "", "| method | " + " | ".join(heads) + " |",
                  "|---|" + "---|" * len(heads)]
        for m in cfg.methods:
            s = summ.get((ds, m))
            if s is None:
                continue
            lines.append(f"| {m} | " + " | ".join(_fmt(s[c]) if c in s else "—" for c in cols) + " |")
        lines.append("")
    if "icfm" in cfg.methods and "qac" in cfg.methods:
        wanted = {"curv100": "Curv(K=100)", "ed1": "ED@1", "ed2": "ED@2", "ed4": "ED@4", "lcfm": "L_CFM"}
        present = [c for c in wanted if all(c in r for r in rows)]
        lines += ["## QAC ÷ baseline (ratio of seed means ± first-order std)", "",
                  "| data set | " + " | ".join(wanted[c] for c in present) + " |",
                  "|---|" + "---|" * len(present)]
        for ds in cfg.datasets:
            if (ds, "qac") not in summ or (ds, "icfm") not in summ:
                continue
            cells = ["{:.3f} ± {:.3f}".format(*ratio(summ, ds, c)) for c in present]
            lines.append(f"| {ds} | " + " | ".join(cells) + " |")
        lines += ["", "ED@100 is left out of the ratios: both methods sit at the data floor there.", ""]
    if notes:
        lines += ["## Notes", "", notes.strip(), ""]
    return "\n".join(lines)


def plot_trajectories(runs: dict[str, Any], path: str | Path, *, num: int = 30, steps: int = 100,
                      sigma_max: float = 999.0) -> Path:
    """A grid of panels (rows: data sets, columns: methods) with ``num`` Euler trajectories each.

    ``runs`` maps ``"dataset/method"`` to a loaded run; QAC trajectories are coloured by code index.
    """
    from qac.metrics.plots import pyplot, save_figure

    plt = pyplot()
    datasets = sorted({k.split("/")[0] for k in runs}, key=list(k.split("/")[0] for k in runs).index)
    methods = sorted({k.split("/")[1] for k in runs}, key=list(k.split("/")[1] for k in runs).index)
    fig, axes = plt.subplots(len(datasets), len(methods), figsize=(3.2 * len(methods), 3.2 * len(datasets)),
                             squeeze=False)
    cmap = plt.get_cmap("tab20")
    for i, ds in enumerate(datasets):
        for j, m in enumerate(methods):
            ax = axes[i][j]
            run = runs.get(f"{ds}/{m}")
            if run is None:
                ax.axis("off")
                continue
            cur = trajectory_curvature(run, list(range(num)), steps=steps, sigma_max=sigma_max)
            traj = cur["trajectory"].numpy()  # [K+1, B, 2] in RF space
            for b in range(traj.shape[1]):
                idx = int(cur["indices"][b])
                color = cmap(idx % 20) if idx >= 0 else "tab:blue"
                ax.plot(traj[:, b, 0], traj[:, b, 1], "-", lw=0.8, color=color, alpha=0.8)
                ax.plot(traj[-1, b, 0], traj[-1, b, 1], ".", color="k", ms=3)
            ax.set_title(f"{ds} / {m}: curv {cur['curvature']:.3f}", fontsize=8)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=6)
    return save_figure(fig, path, dpi=110)


def config_dict(cfg: ToyBenchConfig) -> dict[str, Any]:
    """The benchmark settings as a JSON-ready dict (written into the results file)."""
    return asdict(cfg)
