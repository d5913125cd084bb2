"""Metric vs NFE for several runs and solvers: CSV, markdown table and plot (docs/design.md §5).

Every (run, solver, NFE) is evaluated under the same seeds and the same :class:`SamplingSpec` (schedule,
sigma range, AFS, solver options, code weights); a pair the solver cannot spend exactly (e.g. an even NFE
for Heun under the rf protocol) is skipped with a note instead of failing. ``budget="steps"`` sweeps step
counts instead of NFE. Metrics:

* point runs: ``energy_distance`` (alias ``energy``), ``w2``, ``mmd`` against fresh toy data (with floor);
* image runs: ``fid`` (needs a detector and ``ref``) or a Fréchet proxy ``proxy_pixel_fd`` /
  ``proxy_randconv_fd`` (``ref`` made with ``qac fid ref --proxy``). Proxies keep their ``proxy_*`` names
  in every output.

>>> res = sweep(["runs/a", "runs/b"], ["euler", "heun"], [2, 4], "energy", num=1000)  # doctest: +SKIP
>>> write_sweep(res, "sweep_out")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qac.errors import QACError
from qac.eval.evaluate import fid_of_run, open_run, toy_metric_of_run
from qac.metrics.registry import get_metric
from qac.metrics.stats import Reference, load_reference
from qac.sampling import get_solver
from qac.sampling.flow import flow_steps_for_nfe
from qac.sampling.sample import resolve_nfe
from qac.sampling.spec import SamplingSpec

ALIASES = {"energy": "energy_distance", "ed": "energy_distance"}
CSV_COLUMNS = ("run", "run_name", "solver", "nfe", "steps", "afs", "schedule", "metric", "value", "floor", "n", "seeds",
               "seconds", "aligned")


def resolve_metric(name: str) -> str:
    """Canonical metric name (``energy`` -> ``energy_distance``); QACError for unknown names.

    >>> resolve_metric("energy"), resolve_metric("proxy_pixel_fd")
    ('energy_distance', 'proxy_pixel_fd')
    """
    name = ALIASES.get(name, name)
    spec = get_metric(name)
    if spec.domain == "image" and spec.name != "fid" and spec.detector is None:
        raise QACError(f"metric {name!r} compares image sets directly; the sweep supports fid, "
                       f"proxy_pixel_fd, proxy_randconv_fd, energy_distance, w2, mmd")
    return spec.name


@dataclass
class SweepResult:
    """Rows (one per evaluated run × solver × NFE) and the skipped pairs with their reasons."""

    metric: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_proxy(self) -> bool:
        """True for a ``proxy_*`` metric, which is never comparable to published FID."""
        return self.metric.startswith("proxy_")


def sweep(runs: Sequence[Any], solvers: Sequence[str], nfes: Sequence[int], metric: str, *,
          ref: Reference | str | Path | None = None, detector: Any = None, num: int = 2000,
          seeds_start: int = 0, batch_size: int = 256, afs: bool = False, codes: str = "online",
          progress: bool = False, log: Any = None, info: Any = None, denoise_factory_for: Any = None,
          spec: SamplingSpec | None = None, budget: str = "nfe") -> SweepResult:
    """Evaluate ``metric`` for every run × solver × NFE (see the module docstring).

    ``spec`` holds everything but solver and budget (its ``afs`` and ``codes`` win over the keywords);
    ``budget`` is ``"nfe"`` or ``"steps"`` (then ``nfes`` are step counts).

    ``info`` (a :class:`qac.train.distributed.DistInfo`) splits each evaluation's seeds over torchrun
    processes. ``denoise_factory_for(run, solver, nfe, afs)`` may return a denoise factory for that point (a
    timestep aligner, :func:`qac.align.sweep_factories`) or ``None``; rows record ``aligned``.
    """
    metric = resolve_metric(metric)
    base = spec if spec is not None else SamplingSpec(afs=afs, codes=codes)
    afs, codes = base.afs, base.codes
    if budget not in ("nfe", "steps"):
        raise QACError(f"budget must be 'nfe' or 'steps', got {budget!r}")
    mspec = get_metric(metric)
    for s in solvers:
        entry = get_solver(s)  # unknown solver names are user errors up front
        if entry.nfe is None:
            raise QACError(f"solver {s!r} is adaptive: it has no fixed NFE to sweep")
    if not nfes:
        raise QACError("give at least one NFE")
    if mspec.domain == "image":
        if ref is None:
            raise QACError(f"metric {metric!r} needs reference statistics (--ref, from `qac fid ref`)")
        ref = load_reference(ref) if isinstance(ref, (str, Path)) else ref
        if detector is None:
            if metric == "fid":
                raise QACError("metric 'fid' needs a detector (--detector PATH); or use a proxy_* metric")
            detector = mspec.detector(0)
    loaded = [open_run(r) for r in runs]
    for s in solvers:  # solver/schedule/formulation combinations are user errors up front too
        for run in loaded:
            base.replace(solver=s).for_formulation(run.model.formulation.name)
    kinds = {r.path: "image" if len(r.model.item_shape) == 3 else "points" for r in loaded}
    bad = [str(p) for p, k in kinds.items() if k != mspec.domain]
    if bad:
        raise QACError(f"metric {metric!r} is for {mspec.domain} runs; {bad[0]} holds "
                       f"{'images' if mspec.domain == 'points' else 'points'}")
    res = SweepResult(metric)
    names = _run_names(loaded)
    for run, name in zip(loaded, names):
        for solver in solvers:
            for nfe in nfes:
                factory = None
                if budget == "nfe" and denoise_factory_for is not None:
                    factory = denoise_factory_for(run, solver, nfe, afs)
                point = base.replace(solver=solver, **{budget: nfe})
                if factory is not None and point.schedule == "auto":
                    point = point.replace(schedule="polynomial")
                try:
                    point = point.for_formulation(run.model.formulation.name)
                    steps = nfe if budget == "steps" else _steps_of(point)
                except QACError as exc:
                    res.skipped.append({"run_name": name, "solver": solver, "nfe": nfe, "reason": str(exc)})
                    continue
                common = dict(spec=point, num=num, seeds_start=seeds_start, batch_size=batch_size, info=info,
                              denoise_factory=factory)
                if mspec.domain == "image":
                    m = fid_of_run(run, ref, detector, progress=progress, **common)
                else:
                    m = toy_metric_of_run(run, metric, **common)
                row = {"run": m.run, "run_name": name, "solver": solver, "nfe": m.nfe, "steps": steps,
                       "afs": afs, "schedule": m.schedule, "metric": m.metric, "value": m.value, "floor": m.floor,
                       "n": m.n, "seeds": m.seeds, "seconds": round(m.seconds, 3), "aligned": factory is not None}
                res.rows.append(row)
                if log is not None:
                    log(f"{name} {solver} NFE {m.nfe}: {m.metric} = {m.value:.5g}")
    return res


def _steps_of(spec: SamplingSpec) -> int:
    """Steps of a point given by NFE (QACError when the solver cannot spend it exactly)."""
    if spec.schedule == "flow":
        return flow_steps_for_nfe(spec.solver, spec.nfe)
    return resolve_nfe(spec.solver, spec.nfe, afs=spec.afs)[0]


def _run_names(runs: Sequence[Any]) -> list[str]:
    names = [Path(r.path).name for r in runs]
    if len(set(names)) < len(names):
        names = [f"{n}#{i}" for i, n in enumerate(names)]
    return names


def to_csv(res: SweepResult) -> str:
    """One CSV row per (run, solver, NFE) with the columns of :data:`CSV_COLUMNS`."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in res.rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_COLUMNS})
    return buf.getvalue()


def to_markdown(res: SweepResult, nfes: Sequence[int]) -> str:
    """One row per run × solver, one column per NFE; ``—`` where the pair was skipped."""
    label = f"{res.metric} (proxy, not FID)" if res.is_proxy else res.metric
    nfes = sorted(set(nfes))
    lines = [f"# {label} vs NFE", "", "| run | solver | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
             "|---|---|" + "---|" * len(nfes)]
    cells: dict[tuple[str, str], dict[int, float]] = {}
    for r in res.rows:
        solver = r["solver"] + (" +aligner" if r.get("aligned") else "")
        cells.setdefault((r["run_name"], solver), {})[int(r["nfe"])] = float(r["value"])
    for s in res.skipped:
        cells.setdefault((s["run_name"], s["solver"]), {})
    for (run, solver), vals in cells.items():
        row = " | ".join(f"{vals[n]:.4g}" if n in vals else "—" for n in nfes)
        lines.append(f"| {run} | {solver} | {row} |")
    floors = sorted({round(float(r["floor"]), 6) for r in res.rows if r.get("floor") is not None})
    if floors:
        lines += ["", f"Data-vs-data floor of {res.metric}: " + ", ".join(f"{f:.4g}" for f in floors) + "."]
    if res.skipped:
        lines += ["", "Skipped:"] + [f"- {s['run_name']} / {s['solver']} at NFE {s['nfe']}: {s['reason']}"
                                     for s in res.skipped]
    return "\n".join(lines) + "\n"


def write_sweep(res: SweepResult, out: str | Path, nfes: Sequence[int] | None = None,
                plot: bool = True) -> dict[str, Path]:
    """Write ``sweep.csv``, ``sweep.md``, ``sweep.json`` (and ``sweep.png``) into ``out``."""
    from qac.util import atomic_write_bytes, atomic_write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    nfes = nfes if nfes is not None else sorted({int(r["nfe"]) for r in res.rows})
    paths = {"csv": out / "sweep.csv", "md": out / "sweep.md", "json": out / "sweep.json"}
    atomic_write_bytes(paths["csv"], to_csv(res).encode())
    atomic_write_bytes(paths["md"], to_markdown(res, nfes).encode())
    atomic_write_json(paths["json"], {"metric": res.metric, "is_proxy": res.is_proxy, "rows": res.rows,
                                      "skipped": res.skipped})
    if plot and res.rows:
        from qac.metrics.plots import plot_metric_vs_nfe

        paths["png"] = plot_metric_vs_nfe(res.rows, res.metric, out / "sweep.png")
    return paths
