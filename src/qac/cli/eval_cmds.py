"""``qac analyze`` (L_CFM(t) and curvature of a run) and ``qac sweep`` (metric vs NFE, runs × solvers).

Thin layers over :mod:`qac.eval.analysis` and :mod:`qac.eval.sweep`.
"""

from __future__ import annotations

from pathlib import Path

import click

from qac.cli.params import POSITIVE_INTS, NumberList
from qac.errors import QACError


@click.command("analyze")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False), help="trained run folder")
@click.option("--out", "out", default=None, type=click.Path(file_okay=False),
              help="output folder (default: RUN/analysis)")
@click.option("--num", default=2000, type=click.IntRange(min=2), help="held-out points / trajectories")
@click.option("--ts", default="0.05,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95",
              type=NumberList(float, minimum=None, maximum=None, ranges=False),
              help="RF times t in (0, 1) for L_CFM(t) (t = 1 is noise)")
@click.option("--curvature-steps", default=100, type=click.IntRange(min=1), help="Euler steps (RNE: 100)")
@click.option("--sigma-max", default=None, type=float,
              help="largest sigma of the uniform-t Euler grid (default: 999 for rf, 80 otherwise)")
@click.option("--codes", default="online", type=click.Choice(["online", "offline"]), help="code weights")
@click.option("--seeds-start", default=0, type=click.IntRange(min=0), help="first seed")
@click.option("--batch", default=512, type=click.IntRange(min=1), help="batch size")
@click.option("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto")
@click.option("--progress/--no-progress", default=True, help="show a progress bar")
def analyze(run_dir: str, out: str | None, num: int, ts: list[float], curvature_steps: int, sigma_max: float | None,
            codes: str, seeds_start: int, batch: int, device: str, progress: bool) -> None:
    """Per-t L_CFM on held-out data (QAC: each point's own code) and RNE curvature -> analysis.json + .png."""
    from qac.eval.analysis import analyze_run, plot_analysis
    from qac.safeio import check_writable
    from qac.train.run import load_run
    from qac.util import atomic_write_json

    run = load_run(run_dir, device=device)
    check_writable(out if out else Path(run_dir) / "analysis")
    rep = analyze_run(run, num=num, ts=ts, curvature_steps=curvature_steps, sigma_max=sigma_max,
                      seeds_start=seeds_start, codes=codes, batch_size=batch, progress=progress)
    folder = Path(out) if out else Path(run_dir) / "analysis"
    atomic_write_json(folder / "analysis.json", rep)
    plot_analysis(rep, folder / "analysis.png")
    click.echo(f"L_CFM mean {rep['lcfm_mean']:.4f} over t={','.join(rep['lcfm'])}; curvature "
               f"{rep['curvature']:.4f} (Euler K={curvature_steps}) -> {folder}/analysis.json, analysis.png")


@click.command("sweep")
@click.option("--run", "runs", required=True, multiple=True, type=click.Path(file_okay=False),
              help="run folder (repeat for several runs)")
@click.option("--solver", "solvers", default="euler,heun,dpmpp_2m", help="comma-separated solvers")
@click.option("--nfe", "nfes", default="3,4,5,6,8,10", type=POSITIVE_INTS, help="comma-separated NFEs")
@click.option("--metric", default="energy",
              help="fid | proxy_pixel_fd | proxy_randconv_fd (images); energy | w2 | mmd (points)")
@click.option("--ref", "ref_path", default=None, type=click.Path(dir_okay=False),
              help="reference statistics for fid / proxy_* (from `qac fid ref`)")
@click.option("--detector", "detector_path", default=None, type=click.Path(dir_okay=False),
              help="TorchScript detector for --metric fid")
@click.option("--num", default=2000, type=click.IntRange(min=2), help="samples per point of the sweep")
@click.option("--seeds-start", default=0, type=click.IntRange(min=0), help="first seed")
@click.option("--afs", is_flag=True, help="analytical first step")
@click.option("--codes", default="online", type=click.Choice(["online", "offline"]), help="code weights")
@click.option("--batch", default=256, type=click.IntRange(min=1), help="batch size")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="output folder")
@click.option("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto")
@click.option("--progress/--no-progress", default=True, help="show progress")
@click.option("--aligner", "aligners", multiple=True, type=click.Path(dir_okay=False),
              help="aligner JSON used where run, solver, NFE and AFS match (repeatable)")
@click.option("--align", "align_fly", is_flag=True, help="align every other point on the fly (`qac align` defaults)")
def sweep_cmd(runs: tuple[str, ...], solvers: str, nfes: list[int], metric: str, ref_path: str | None,
              detector_path: str | None, num: int, seeds_start: int, afs: bool, codes: str, batch: int,
              out: str, device: str, progress: bool, aligners: tuple[str, ...], align_fly: bool) -> None:
    """Metric vs NFE for every run × solver -> sweep.csv, sweep.md, sweep.json, sweep.png (torchrun: seeds
    split over the processes, rank 0 writes)."""
    from qac.eval.sweep import resolve_metric, sweep, write_sweep
    from qac.safeio import check_writable
    from qac.train.distributed import init_distributed, rank_device
    from qac.train.run import load_run

    name = resolve_metric(metric)
    check_writable(out)
    solver_list = [s.strip() for s in solvers.split(",") if s.strip()]
    if not solver_list:
        raise QACError("give at least one --solver")
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
                seeds_start=seeds_start, batch_size=batch, afs=afs, codes=codes, progress=False,
                log=click.echo if progress and info.is_main else None, info=info, denoise_factory_for=lookup)
    if not info.is_main:
        return
    paths = write_sweep(res, out, nfes)
    for s in res.skipped:
        click.echo(f"skipped {s['run_name']} / {s['solver']} at NFE {s['nfe']}: {s['reason']}")
    click.echo(f"{len(res.rows)} {res.metric} values ({len(res.skipped)} skipped) -> "
               + ", ".join(str(p) for p in paths.values()))
