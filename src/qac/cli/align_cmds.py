"""``qac align``: train a timestep aligner (and optional Q-Sched scalars) for one run, solver and NFE."""

from __future__ import annotations

from pathlib import Path

import click

from qac.errors import QACError


@click.command("align")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False), help="trained run folder")
@click.option("--solver", default="euler", help="deterministic solver with a fixed NFE (`qac solvers`)")
@click.option("--nfe", required=True, type=click.IntRange(min=1), help="network evaluations per sample")
@click.option("--afs", is_flag=True, help="analytical first step")
@click.option("--schedule", default="polynomial", help="polynomial, logsnr or time_uniform")
@click.option("--mode", default="full", type=click.Choice(["full", "embed"]),
              help="full: D(x, tau); embed: only the noise embedding sees tau")
@click.option("--loss", default="global", type=click.Choice(["global", "tm", "sc", "dsm"]),
              help="global: whole sampler vs a Heun teacher; tm: local teacher; sc: self-consistency; dsm: data")
@click.option("--delta/--no-delta", "learn_delta", default=True, help="learn the noise-level offsets")
@click.option("--qsched", is_flag=True, help="also learn per-evaluation output and state multipliers")
@click.option("--delta-max", default=1.0, type=float, help="bound |delta| <= delta_max via tanh (0: unbounded)")
@click.option("--pool", default=1024, type=click.IntRange(min=2), help="training trajectories (noise seeds)")
@click.option("--val", default=128, type=click.IntRange(min=1), help="held-out trajectories of the pool")
@click.option("--iters", default=100, type=click.IntRange(min=0), help="Adam iterations per step (or stage)")
@click.option("--batch", default=64, type=click.IntRange(min=1), help="trajectories per iteration")
@click.option("--lr", default=1e-2, type=float, help="Adam learning rate")
@click.option("--init", "init_path", default=None, type=click.Path(dir_okay=False),
              help="start from this aligner (e.g. --loss global after a --loss tm run)")
@click.option("--codes", default="online", type=click.Choice(["online", "offline"]), help="code weights (QAC)")
@click.option("--seed", default=0, type=int, help="seed of the training batches")
@click.option("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="aligner JSON to write (+ .png plot)")
@click.option("--progress/--no-progress", default=True, help="progress bar per step")
def align_cmd(run_dir: str, solver: str, nfe: int, afs: bool, schedule: str, mode: str, loss: str, learn_delta: bool,
              qsched: bool, delta_max: float, pool: int, val: int, iters: int, batch: int, lr: float,
              init_path: str | None, codes: str, seed: int, device: str, out: str, progress: bool) -> None:
    """Learn one noise-level offset per network evaluation of SOLVER at NFE for RUN -> ALIGN.json."""
    from qac.align import AlignConfig, Aligner, align, plot_delta, run_target
    from qac.train.run import load_run

    if delta_max < 0:
        raise QACError("--delta-max must be >= 0 (0: unbounded)")
    cfg = AlignConfig(solver=solver, nfe=nfe, afs=afs, schedule=schedule, mode=mode, loss=loss, delta=learn_delta,
                      qsched=qsched, delta_max=delta_max or None, pool=pool, val=min(val, pool - 1), iters=iters,
                      batch=batch, lr=lr, seed=seed).validate()
    init = Aligner.load(init_path) if init_path else None
    run = load_run(run_dir, device=device)
    al = align(run_target(run, codes), cfg, init=init, progress=progress, log=lambda m: click.echo(m, err=True))
    path = al.save(out)
    plot = plot_delta(al, Path(out).with_suffix(".png"))
    kept = sum(1 for s in al.stats["steps"] if s.get("accepted"))
    click.echo(f"aligned {solver} NFE {nfe}{' afs' if afs else ''} ({mode}, {loss}) in {al.stats['seconds']:.1f} s, "
               f"{kept}/{len(al.stats['steps'])} stages kept: delta = [{', '.join(f'{d:+.3f}' for d in al.delta)}]"
               f" -> {path}, {plot}")
