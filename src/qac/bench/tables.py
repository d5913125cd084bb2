"""Machinery of the paper-table benchmark (``benchmarks/paper_tables.py``): RF sampling, evaluation of a run
under a plan (with a per-run cache), summaries over seeds and checks of the directions the paper states.

Sampling follows the paper's RF protocol (Tables 1-4: an RF model on its own time t in [0, 1], a uniform t
grid from t = 1, Heun with a final Euler step, RK45 in t: ``schedule="flow"``) through :func:`sample_rf`.

>>> parse_sampler("heun@5"), parse_sampler("rk45")
(('heun', 5), ('rk45', None))
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qac.bench.runs import RunSpec, train_or_reuse
from qac.bench.scoring import Scorer, toy_name
from qac.errors import QACError

#: Largest sigma of a uniform-t curvature grid (unused by rf runs, which use the protocol grid from t = 1).
RF_SIGMA_MAX = 999.0
#: Seed of the fresh toy points on which L_CFM is measured (toybench's choice).
LCFM_SEED = 10**6 + 1


def parse_sampler(name: str) -> tuple[str, int | None]:
    """``"heun@5"`` -> ``("heun", 5)``; ``"rk45"`` -> ``("rk45", None)`` (adaptive: NFE counted)."""
    solver, _, nfe = name.partition("@")
    return solver, (int(nfe) if nfe else None)


def sample_rf(run: Any, seeds: Sequence[int], solver: str, nfe: int | None = None, *, weights: Any = None,
              tol: float = 1e-5, batch_size: int = 4096, nfe_points: int = 32) -> tuple[torch.Tensor, float]:
    """Samples of an rf-formulation ``run`` for ``seeds`` with the RF protocol (``schedule="flow"``:
    :mod:`qac.sampling.flow`); returns ``(samples, nfe)``. ``weights``: code weights to draw codes from (default:
    the run's online weights).

    RK45 (``rtol = atol = tol``) samples all seeds in one batch, but a batch shares its steps and so spends what
    its worst member needs; the NFE reported is the mean per sample over the first ``nfe_points`` seeds, each
    solved alone (:func:`qac.bench.toybench.rk45_nfe`, docs/solvers.md).
    """
    from qac.bench.toybench import rk45_nfe
    from qac.sampling.generate import generate

    weights = run.code_weights() if weights is None else weights
    seeds = list(seeds)
    opts: dict[str, Any] = {"rtol": tol, "atol": tol, "batch_size": len(seeds)} if solver == "rk45" else {
        "nfe": nfe, "batch_size": batch_size}
    out = generate(run.model, seeds, code_weights=weights, solver=solver, schedule="flow", **opts)
    used: float = out.nfe
    if solver == "rk45":
        used = rk45_nfe(run, seeds[:nfe_points], tol, code_weights=weights)["nfe"]
    return (out.samples.clamp(-1, 1) if len(run.model.item_shape) == 3 else out.samples), used


def protocol_name() -> str:
    """How :func:`sample_rf` samples (written into every results file): the RF protocol ``flow``."""
    return "flow"


@dataclass(frozen=True)
class EvalPlan:
    """What to measure on a run. ``samplers``: ``solver@nfe`` names or ``rk45``; ``lcfm_points = 0`` skips
    L_CFM; ``codes``: ``online`` or ``offline`` code weights (offline: collected on first use)."""

    n_eval: int = 2000
    lcfm_points: int = 0
    lcfm_ts: int = 10
    curvature_steps: tuple[int, ...] = ()
    samplers: tuple[str, ...] = ()
    rk45_tol: float = 1e-5
    codes: str = "online"

    def key(self) -> str:
        """Cache key: the plan's fields and the sampling protocol as sorted JSON (equal keys reuse one measurement)."""
        return json.dumps({**asdict(self), "protocol": protocol_name()}, sort_keys=True)


def _weights(run: Any, codes: str) -> Any:
    if codes == "offline":
        from qac.train.run import collect_run

        if not (run.path / "codes_offline.safetensors").exists():
            collect_run(run, progress=False)
    return run.code_weights(codes) if run.model.conditional else None


def evaluate_run(run: Any, plan: EvalPlan, scorer: Scorer) -> dict[str, Any]:
    """Every measurement of ``plan`` on a loaded run: ``lcfm``, ``curv{K}``, one score per sampler (and
    ``rk45_nfe``), code statistics of the weights used (``codes_used`` > 1e-3, ``perplexity``)."""
    from qac.bench.toybench import mean_lcfm
    from qac.data import sample_toy
    from qac.eval.analysis import held_out_data, trajectory_curvature
    from qac.util import seed_generator

    rec: dict[str, Any] = {}
    seeds = list(range(plan.n_eval))
    weights = _weights(run, plan.codes)
    if plan.lcfm_points:
        toy = toy_name(run.config.data)
        x = (sample_toy(toy, plan.lcfm_points, seed_generator(LCFM_SEED)) if toy
             else held_out_data(run, plan.lcfm_points)[0])
        rec["lcfm"] = mean_lcfm(run, x, plan.lcfm_ts)
    for k in plan.curvature_steps:
        rec[f"curv{k}"] = trajectory_curvature(run, seeds, steps=k, sigma_max=RF_SIGMA_MAX,
                                               codes=plan.codes)["curvature"]
    for name in plan.samplers:
        solver, nfe = parse_sampler(name)
        samples, used = sample_rf(run, seeds, solver, nfe, weights=weights, tol=plan.rk45_tol)
        if not bool(torch.isfinite(samples).all()):
            raise QACError(f"{run.path}: {name} gave NaN/Inf samples")
        rec[name] = scorer(samples)
        if nfe is None:
            rec[f"{name}_nfe"] = used
    if weights is not None and hasattr(weights, "perplexity"):
        rec["codes_used"] = weights.num_used(1e-3)
        rec["perplexity"] = weights.perplexity()
    return rec


@dataclass(frozen=True)
class Job:
    """One run (trained once) and the (table, row, plan) evaluations asked of it."""

    spec: RunSpec
    evals: tuple[tuple[int, str, EvalPlan], ...]
    workdir: str
    reuse: bool = True


def run_job(job: Job) -> list[dict[str, Any]]:
    """Train or reuse ``job.spec``, evaluate every plan (cached in the run folder), return one record each."""
    from qac.train.run import load_run

    torch.set_num_threads(1)
    run_dir, train_s, reused = train_or_reuse(job.spec, job.workdir, job.reuse)
    cache_path = run_dir / "bench_tables_eval.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    run, scorers, out = None, {}, []
    for table, row, plan in job.evals:
        t0 = time.perf_counter()
        if plan.key() not in cache:
            run = run or load_run(run_dir, device="cpu")
            scorer = scorers.setdefault(plan.n_eval, Scorer(job.spec.data, plan.n_eval))
            cache[plan.key()] = {**evaluate_run(run, plan, scorer), "eval_s": time.perf_counter() - t0}
            cache_path.write_text(json.dumps(cache))
        out.append({"table": table, "task": job.spec.data, "row": row, "seed": job.spec.seed, "run": run_dir.name,
                    "train_s": train_s, "reused": reused, **cache[plan.key()]})
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN for one value: no spread was measured)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), (float(arr.std(ddof=1)) if len(arr) > 1 else math.nan)


def summarize(records: Sequence[dict[str, Any]], columns: Sequence[str]) -> dict[tuple[str, str], dict]:
    """``{(task, row): {column: (mean, std over seeds), "n": seeds}}`` for the columns present."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["task"], r["row"]), []).append(r)
    return {key: {"n": len(rs), **{c: mean_std([r[c] for r in rs]) for c in columns if all(c in r for r in rs)}}
            for key, rs in groups.items()}


def fmt(ms: tuple[float, float] | None) -> str:
    """``mean ± std`` with 3 significant digits (``—`` when absent; the mean alone for a single seed).

    >>> fmt((0.12345, 0.01)), fmt((0.12345, float("nan"))), fmt((1234.0, 5.0))
    ('0.123 ± 0.01', '0.123', '1234 ± 5')
    """
    if ms is None:
        return "—"
    m, s = ms
    if not math.isfinite(m):
        return "nan"
    mean = f"{m:.0f}" if abs(m) >= 100 else f"{m:.3g}"
    if not math.isfinite(s):
        return mean
    return f"{mean} ± {s:.0f}" if abs(m) >= 100 else f"{mean} ± {s:.2g}"


@dataclass(frozen=True)
class Claim:
    """A direction the paper's text states, checked on the seed means of one column (lower is better).

    ``kind``: ``below`` (rows[0] below each other row), ``all_below`` (each row below the last one), ``best``
    (rows[0] the lowest), ``decreasing``/``increasing`` (along ``rows``).
    """

    text: str
    kind: str
    rows: tuple[str, ...]
    column: str


def check_claim(claim: Claim, summ: dict[tuple[str, str], dict], task: str) -> str:
    """``agrees``/``disagrees`` with the numbers behind it; ``not measured`` when a row or column is missing."""
    vals = [summ.get((task, r), {}).get(claim.column) for r in claim.rows]
    if any(v is None for v in vals):
        return "not measured (rows skipped)"
    means = [v[0] for v in vals]
    if claim.kind == "below":
        ok = all(means[0] < m for m in means[1:])
    elif claim.kind == "all_below":
        ok = all(m < means[-1] for m in means[:-1])
    elif claim.kind == "best":
        ok = means[0] == min(means)
    elif claim.kind == "decreasing":
        ok = all(b < a for a, b in zip(means, means[1:]))
    elif claim.kind == "increasing":
        ok = all(b > a for a, b in zip(means, means[1:]))
    else:
        raise ValueError(f"unknown claim kind {claim.kind!r}")
    nums = ", ".join(f"{r} {m:.3g}" for r, m in zip(claim.rows, means))
    if ok:
        return f"agrees ({claim.column}: {nums})"
    noise = " within seed noise (the means that break it differ by less than their std)" if _within_noise(
        claim, vals) else ""
    return f"**disagrees**{noise} ({claim.column}: {nums})"


def _within_noise(claim: Claim, vals: Sequence[tuple[float, float]]) -> bool:
    """Whether every pair of rows that breaks ``claim`` differs by less than the larger of their two stds."""
    pairs = {"below": [(0, k) for k in range(1, len(vals))],
             "all_below": [(k, len(vals) - 1) for k in range(len(vals) - 1)],
             "best": [(0, k) for k in range(1, len(vals))],
             "decreasing": [(k + 1, k) for k in range(len(vals) - 1)],
             "increasing": [(k, k + 1) for k in range(len(vals) - 1)]}[claim.kind]
    broken = [(a, b) for a, b in pairs if not vals[a][0] < vals[b][0]]
    return all(abs(vals[a][0] - vals[b][0]) < max(vals[a][1], vals[b][1]) for a, b in broken)


def save_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented strict JSON (parent folders created; NaN -> null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(payload), indent=1, allow_nan=False) + "\n")
    return path


def _finite(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (strict JSON: a single seed has no std)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
