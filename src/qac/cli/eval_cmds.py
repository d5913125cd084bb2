"""``qac analyze`` (L_CFM(t) and curvature of a run) and ``qac sweep`` (metric vs NFE, runs × solvers).

Thin layers over :mod:`qac.eval.analysis` and :mod:`qac.eval.sweep`.
"""

from __future__ import annotations

from pathlib import Path

import click

from qac.cli.params import NumberList
from qac.cli.sampling_opts import SamplingOptions, sampling_options
from qac.errors import QACError


@click.command("analyze")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False), help="trained run folder")
@click.option("--out", "out", default=None, type=click.Path(file_okay=False),
              help="output folder (default: RUN/analysis)")
@click.option("--num", default=2000, type=click.IntRange(min=2), help="held-out points / trajectories")
@click.option("--ts", default="0.05,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95",
              type=NumberList(float, minimum=None, maximum=None, ranges=False),
              help="RF times t in (0, 1) for L_CFM(t) (t = 1 is noise)")
@sampling_options(solver="euler", steps_help="steps of the curvature trajectories (default 100, RNE's)")
@click.option("--curvature-steps", "curvature_steps", default=None, type=click.IntRange(min=1), hidden=True,
              help="old name of --steps")
@click.option("--seeds-start", default=0, type=click.IntRange(min=0), help="first seed")
@click.option("--batch", default=512, type=click.IntRange(min=1), help="batch size")
@click.option("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto")
@click.option("--progress/--no-progress", default=True, help="show a progress bar")
def analyze(run_dir: str, out: str | None, num: int, ts: list[float], sampling: SamplingOptions,
            curvature_steps: int | None, seeds_start: int, batch: int, device: str, progress: bool) -> None:
    """Per-t L_CFM on held-out data (QAC: each point's own code) and RNE curvature -> analysis.json + .png.

    The curvature trajectories use the sampling options (default: Euler, 100 steps; an rf run on the rf
    protocol's uniform t grid from t = 1, any other run on a grid uniform in t = sigma/(1+sigma) from
    --sigma-max, unless --schedule names another)."""
    from qac.eval.analysis import analyze_run, plot_analysis
    from qac.safeio import check_writable
    from qac.train.run import load_run
    from qac.util import atomic_write_json

    spec = sampling.spec()
    if curvature_steps is not None:
        spec = spec.replace(steps=curvature_steps, nfe=None)
    if spec.steps is None and spec.nfe is None:
        spec = spec.replace(steps=100)
    run = load_run(run_dir, device=device)
    check_writable(out if out else Path(run_dir) / "analysis")
    rep = analyze_run(run, num=num, ts=ts, spec=spec, seeds_start=seeds_start, batch_size=batch, progress=progress)
    folder = Path(out) if out else Path(run_dir) / "analysis"
    atomic_write_json(folder / "analysis.json", rep)
    plot_analysis(rep, folder / "analysis.png")
    click.echo(f"L_CFM mean {rep['lcfm_mean']:.4f} over t={','.join(rep['lcfm'])}; curvature "
               f"{rep['curvature']:.4f} ({rep['curvature_sampler']}) -> {folder}/analysis.json, analysis.png")


@click.command("sweep")
@click.option("--run", "runs", required=True, multiple=True, type=click.Path(file_okay=False),
              help="run folder (repeat for several runs)")
@sampling_options(solver="euler,heun,dpmpp_2m", lists=True, nfe_default="3,4,5,6,8,10",
                  steps_help="comma-separated step counts (instead of --nfe)")
@click.option("--metric", default="energy",
              help="fid | proxy_pixel_fd | proxy_randconv_fd (images); energy | w2 | mmd (points)")
@click.option("--ref", "ref_path", default=None, type=click.Path(dir_okay=False),
              help="reference statistics for fid / proxy_* (from `qac fid ref`)")
@click.option("--detector", "detector_path", default=None, type=click.Path(dir_okay=False),
              help="TorchScript detector for --metric fid")
@click.option("--num", default=2000, type=click.IntRange(min=2), help="samples per point of the sweep")
@click.option("--seeds-start", default=0, type=click.IntRange(min=0), help="first seed")
@click.option("--batch", default=256, type=click.IntRange(min=1), help="batch size")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="output folder")
@click.option("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto")
@click.option("--progress/--no-progress", default=True, help="show progress")
@click.option("--aligner", "aligners", multiple=True, type=click.Path(dir_okay=False),
              help="aligner JSON used where run, solver, NFE and AFS match (repeatable)")
@click.option("--align", "align_fly", is_flag=True, help="align every other point on the fly (`qac align` defaults)")
def sweep_cmd(runs: tuple[str, ...], sampling: SamplingOptions, metric: str, ref_path: str | None,
              detector_path: str | None, num: int, seeds_start: int, batch: int,
              out: str, device: str, progress: bool, aligners: tuple[str, ...], align_fly: bool) -> None:
    """Metric vs NFE for every run × solver -> sweep.csv, sweep.md, sweep.json, sweep.png (torchrun: seeds
    split over the processes, rank 0 writes)."""
    from qac.eval.sweep import resolve_metric, sweep, write_sweep
    from qac.safeio import check_writable
    from qac.train.distributed import init_distributed, rank_device
    from qac.train.run import load_run

    name = resolve_metric(metric)
    check_writable(out)
    solver_list = sampling.solvers
    budget, nfes = sampling.budgets()
    base = sampling.spec(solver=solver_list[0])
    if budget == "steps" and (aligners or align_fly):
        raise QACError("aligners fix the NFE: sweep --nfe with --aligner/--align, not --steps")
    codes = base.codes
    if ref_path is not None and not Path(ref_path).is_file():
        raise QACError(f"reference statistics {ref_path!r} not found")
    info = init_distributed(device)
    dev = rank_device(device, info)
    detector = None
    if name == "fid":
        if ref_path is None:
            raise QACError("metric 'fid' needs reference statistics (--ref, from `qac fid ref`)")
        from qac.metrics.detectors import open_detector

        detector = open_detector(detector_path, device=dev)
    loaded = [load_run(r, device=dev) for r in runs]
    lookup = None
    if aligners or align_fly:
        from qac.align import AlignConfig, sweep_factories

        lookup = sweep_factories(loaded, aligners, align_cfg=AlignConfig() if align_fly else None,
                                 save_dir=Path(out) / "aligners", log=click.echo if progress else None,
                                 code_source=codes)
    res = sweep(loaded, solver_list, nfes, name, ref=ref_path, detector=detector, num=num,
                seeds_start=seeds_start, batch_size=batch, spec=base, budget=budget, progress=False,
                log=click.echo if progress and info.is_main else None, info=info, denoise_factory_for=lookup)
    if not info.is_main:
        return
    paths = write_sweep(res, out, nfes if budget == "nfe" else None)
    for s in res.skipped:
        click.echo(f"skipped {s['run_name']} / {s['solver']} at NFE {s['nfe']}: {s['reason']}")
    click.echo(f"{len(res.rows)} {res.metric} values ({len(res.skipped)} skipped) -> "
               + ", ".join(str(p) for p in paths.values()))
