"""Using aligners with trained runs: the checks behind ``--aligner``, the delta plot, and ``qac sweep --align``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from qac.align.config import AlignConfig
from qac.align.file import Aligner
from qac.align.targets import run_target, weights_sha256
from qac.errors import QACError

Factory = Callable[[Any, Any], Any]


def run_identity(run: Any, code_source: str = "online") -> dict[str, Any]:
    """What an aligner file must name to be used with ``run`` (its weights hash is what is compared)."""
    return {"kind": "run", "path": str(run.path), "step": int(run.step), "weights_sha256": weights_sha256(run.model),
            "codes": code_source if run.model.conditional else None}


def aligner_for_run(path: str | Path, run: Any, *, solver: str, nfe: int | None, steps: int | None = None,
                    afs: bool = False, **grid: Any) -> tuple[Factory, int]:
    """Load the aligner at ``path`` for ``run`` and this sampler; returns (denoise factory, NFE).

    Refuses (QACError) another run, solver, AFS setting, schedule or NFE, and ``steps`` (an aligner fixes the
    NFE). ``nfe=None`` takes the file's. ``grid`` may hold ``schedule``, ``sigma_min``, ``sigma_max``, ``rho``.
    """
    al = Aligner.load(path)
    if steps is not None:
        raise QACError("an aligner fixes the number of evaluations: give --nfe (or nothing), not --steps")
    al.check(run_identity(run), solver=solver, afs=bool(afs), nfe=nfe, **grid)
    return al.factory(), al.plan.nfe


def plot_delta(aligner: Aligner, path: str | Path) -> Path:
    """delta_k against the evaluation index k (and the Q-Sched multipliers when present)."""
    from qac.metrics.plots import pyplot, save_figure

    plt = pyplot()
    panels = 2 if aligner.out_scale is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.5), squeeze=False)
    ks = list(range(aligner.plan.nfe))
    ax = axes[0][0]
    ax.axhline(0.0, color="0.7", lw=0.8)
    ax.plot(ks, aligner.delta, "o-")
    ax.set_xlabel("evaluation k")
    ax.set_ylabel("delta_k = ln(tau_k / sigma_k)")
    ax.set_title(f"{aligner.plan.solver}, NFE {aligner.plan.nfe}{' +AFS' if aligner.plan.afs else ''} "
                 f"({aligner.mode}, {aligner.loss})")
    if panels == 2:
        ax = axes[0][1]
        ax.axhline(1.0, color="0.7", lw=0.8)
        ax.plot(ks, aligner.out_scale, "o-", label="output m_k")
        ax.plot(ks, aligner.state_scale, "s-", label="state s_k")
        ax.set_xlabel("evaluation k")
        ax.legend()
    return save_figure(fig, path)


def sweep_factories(runs: Sequence[Any], files: Sequence[str | Path] = (), *, align_cfg: AlignConfig | None = None,
                    save_dir: str | Path | None = None, log: Callable[[str], None] | None = None,
                    code_source: str = "online") -> Callable[[Any, str, int, bool], Factory | None]:
    """For :func:`qac.eval.sweep.sweep`: ``lookup(run, solver, nfe, afs)`` -> the matching aligner's factory.

    ``files``: trained aligners, each used where run, solver, NFE and AFS match (a file that matches none of
    the runs is an error). ``align_cfg``: align every other point on the fly with these settings (solver,
    NFE and AFS replaced; QAC codes from ``code_source`` weights), saving each aligner under ``save_dir``.
    """
    hashes = {id(r): weights_sha256(r.model) for r in runs}
    table: dict[tuple[str, str, int, bool], Aligner] = {}
    for f in files:
        al = Aligner.load(f)
        key = (al.target.get("weights_sha256"), al.plan.solver, al.plan.nfe, al.plan.afs)
        if key[0] not in hashes.values():
            raise QACError(f"aligner {f} was trained for none of the given runs ({al.target.get('path')})")
        table[key] = al

    def lookup(run: Any, solver: str, nfe: int, afs: bool) -> Factory | None:
        key = (hashes[id(run)], solver, nfe, bool(afs))
        if key not in table and align_cfg is not None:
            from qac.align.train import align

            cfg = replace(align_cfg, solver=solver, nfe=nfe, afs=bool(afs))
            table[key] = align(run_target(run, code_source), cfg)
            if log is not None:
                log(f"aligned {Path(run.path).name} {solver} NFE {nfe} in {table[key].stats['seconds']:.1f} s")
            if save_dir is not None:
                table[key].save(Path(save_dir) / f"{Path(run.path).name}-{solver}-nfe{nfe}{'-afs' if afs else ''}.json")
        return table[key].factory() if key in table else None

    return lookup
