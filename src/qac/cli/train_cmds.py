"""``qac train``, ``qac collect`` and ``qac info``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from qac.cli.params import POSITIVE_INTS
from qac.errors import QACError

# Names of qac.conditions.fsq.STE_MODES and its DEFAULT_STE, spelled out so that the CLI loads without torch
# (tests/conditions/test_ste_modes.py keeps them equal).
STE_CHOICES = ("identity", "sigmoid", "bounded", "softclip")
STE_DEFAULT = "sigmoid"
COND_CHOICES = ("qac", "none", "rne", "qac+rne", "vae")  # qac.conditions.modes.CONDITIONS (a test keeps them equal)


@click.command()
@click.option("--data", default="digits", help="Dataset: digits, digits16, toy:moons (8gaussians, checkerboard, "
              "spirals, rings), an image folder, an EDM-style .zip or an .npz array.")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True, help="Run folder to create.")
@click.option("--arch", default="auto", help="U-Net preset (digits, digits16, mnist, tiny, cifar10, ffhq64, "
              "afhq64) or mlp for points; auto picks by data.")
@click.option("--formulation", type=click.Choice(["edm", "vp", "ve", "rf"]), default="edm",
              help="Preconditioning and loss.")
@click.option("--cond", type=click.Choice(COND_CHOICES), default="qac",
              help="Condition: qac (quantized codes, paper §3), none (baseline), rne (reparameterized noise "
              "encoder), qac+rne (both on one encoder backbone, paper §4.2), vae (continuous d-vector code, "
              "paper Tab. 3).")
@click.option("--beta", type=float, default=None,
              help="KL weight of rne, qac+rne and vae (default: 20 for rne and qac+rne, RNE's CIFAR-10 setting; "
              "0.1 for vae, measured in docs/results/vae_beta.md; docs/design.md §7).")
@click.option("--levels", type=int, default=2, help="FSQ levels L per code channel.")
@click.option("--code-dim", type=int, default=8, help="Code channels d; codebook size L^d.")
@click.option("--ste", type=click.Choice(STE_CHOICES), default=STE_DEFAULT, show_default=True,
              help="Quantizer gradient (same codes): identity (paper), sigmoid (through L*sigmoid(y)), bounded "
              "(identity while |y| <= ln(L-1)+3, only inward beyond), softclip (through a tanh logit clip); "
              "docs/results/ste.md.")
@click.option("--steps", type=int, default=2000, help="Total optimizer steps (with --resume: the new total).")
@click.option("--batch", "batch_size", type=int, default=64, help="Global batch size.")
@click.option("--lr", type=float, default=1e-3, help="Adam learning rate after warm-up.")
@click.option("--warmup", "lr_warmup_steps", type=int, default=200, help="Linear learning-rate warm-up steps.")
@click.option("--ema-halflife", "ema_halflife_img", type=float, default=500_000.0,
              help="EMA half-life in images (EDM: 0.5 Mimg), ramped up as 0.05 x images seen.")
@click.option("--xflip/--no-xflip", default=False, help="Random horizontal flips of training images.")
@click.option("--resolution", type=int, default=None, help="Resize images to this size.")
@click.option("--max-items", type=int, default=None, help="Use at most this many training items.")
@click.option("--dropout", type=float, default=None, help="Override the preset's dropout.")
@click.option("--channels", "model_channels", type=int, default=None, help="Override the preset's base width.")
@click.option("--seed", type=click.IntRange(min=0, max=2**63 - 1), default=0,
              help="Seed for data order, noise and initialisation.")
@click.option("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto.")
@click.option("--amp/--no-amp", default=False, help="Mixed precision on CUDA (autocast; see --amp-dtype).")
@click.option("--amp-dtype", type=click.Choice(["bf16", "fp16"]), default="bf16",
              help="Autocast dtype with --amp; fp16 adds dynamic loss scaling.")
@click.option("--augment", type=float, default=0.0, help="EDM augmentation probability p in [0, 1] (CIFAR-10: 0.12).")
@click.option("--batch-gpu", type=int, default=None,
              help="Rows per process and accumulation round (gradient accumulation; global batch unchanged).")
@click.option("--channels-last/--no-channels-last", default=False, help="channels_last memory format for images.")
@click.option("--compile/--no-compile", "compile", default=False, help="torch.compile the training step.")
@click.option("--workers", type=int, default=0,
              help="DataLoader worker processes (image folders/zips are then read lazily); 0: in memory.")
@click.option("--recipe", default=None, help="Paper run to reproduce: cifar10-edm, cifar10-qac, ffhq64-qac, "
              "afhq64-qac (fills every setting; flags given explicitly override it).")
@click.option("--log-every", type=int, default=50, help="Steps between stats.jsonl lines.")
@click.option("--snapshot-every", type=int, default=500, help="Steps between checkpoints.")
@click.option("--grid-every", type=int, default=500, help="Steps between sample grids.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint; only --steps, "
              "--device, --amp and the intervals may change (and the --override ones).")
@click.option("--override", "overrides", multiple=True, type=click.Choice(["lr", "warmup", "ema-halflife"]),
              help="With --resume: allow this optimisation setting to change (repeatable).")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def train(out: str, resume: bool, overrides: tuple[str, ...], progress: bool, **opts) -> None:
    """Train a QAC (paper Algorithm 1) or baseline diffusion model.

    A first SIGINT/SIGTERM finishes the step, writes a checkpoint and exits with 130/143; a second one
    ends the process at once (the previous checkpoint stays intact).
    """
    from qac.safeio import check_writable
    from qac.train import train as run_training
    from qac.train.signals import exit_code

    if overrides and not resume:
        raise QACError("--override only applies with --resume")
    recipe = opts.pop("recipe")
    if resume and recipe is not None:
        raise QACError("--recipe starts a new run; drop it when resuming with --resume")
    cfg = _resume_config(out, opts) if resume else _new_config(opts, recipe)
    check_writable(out)
    try:
        summary = run_training(cfg, out, resume=resume, progress=progress, overrides=overrides)
    except KeyboardInterrupt:
        raise QACError(f"interrupted; the last checkpoint in {out} is intact (continue with --resume)") from None
    if summary.interrupted:
        import signal

        name = signal.Signals(summary.signal).name if summary.signal else "a signal"
        if summary.is_main:
            click.echo(f"stopped by {name} at step {summary.step}; checkpoint written to {summary.run_dir} "
                       f"(continue with --resume)", err=True)
        sys.exit(exit_code(summary.signal) if summary.signal else 1)
    if not summary.is_main:
        return  # one summary per job, from rank 0
    if summary.step == summary.start_step:
        click.echo(f"{summary.run_dir} is already at step {summary.step}: nothing to train (raise --steps)")
        return
    click.echo(f"trained {summary.step} steps in {summary.seconds:.0f}s, final loss {summary.loss:.4f}; "
               f"run folder: {summary.run_dir}")


_MODEL_KEYS = ("arch", "formulation", "cond", "levels", "code_dim", "dropout", "model_channels", "ste", "beta")


def _given(opts: dict) -> dict:
    """The options typed on this command line (defaults are not choices)."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    return {k: v for k, v in opts.items() if ctx.get_parameter_source(k) not in (None, ParameterSource.DEFAULT)}


def _new_config(opts: dict, recipe: str | None):
    from qac.train import ModelConfig, TrainConfig

    if recipe is not None:
        from qac.train.recipes import resolve_recipe

        return resolve_recipe(recipe, _given(opts))
    model = ModelConfig(**{k: opts.pop(k) for k in _MODEL_KEYS})
    return TrainConfig(model=model, **opts)


def _resume_config(out: str, opts: dict):
    """The saved config with the options given on this command line applied (defaults are not changes)."""
    import dataclasses

    from qac.train.config import load_config

    if not Path(out).is_dir():
        raise QACError(f"run folder {out} does not exist (drop --resume to start a new run)")
    saved = load_config(Path(out) / "config.json")
    given = _given(opts)
    model = dataclasses.replace(saved.model, **{k: given.pop(k) for k in _MODEL_KEYS if k in given})
    return dataclasses.replace(saved, model=model, **given)


@click.command()
@click.option("--run", "run_dir", type=click.Path(), required=True, help="Run folder.")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=256,
              help="Encoder batch size (per process).")
@click.option("--device", default="auto", help="cpu, cuda, mps or auto.")
@click.option("--progress/--no-progress", default=True)
def collect(run_dir: str, batch_size: int, device: str, progress: bool) -> None:
    """Offline code weights: encode the training set with the EMA encoder (paper §3.3); under torchrun every
    process encodes a block of the data and the histograms are summed."""
    from qac.safeio import check_writable
    from qac.train.distributed import init_distributed, rank_device
    from qac.train.run import collect_run, load_run

    info = init_distributed(device)
    run = load_run(run_dir, device=rank_device(device, info))
    check_writable(run_dir, option="--run")
    path = collect_run(run, batch_size=batch_size, progress=progress and info.is_main, info=info)
    if not info.is_main:
        return
    stats = run.code_weights("offline").stats()
    click.echo(f"offline code weights: {int(stats['used'])} codes used of {int(stats['codebook'])}, "
               f"perplexity {stats['perplexity']:.1f} -> {path}")


@click.command()
@click.option("--run", "run_dir", type=click.Path(), default=None, help="A run folder to describe.")
@click.option("--arch", default=None, help="Describe a preset instead (with --data for its shape).")
@click.option("--recipe", default=None, help="Describe a recipe: resolved config and an estimate of its cost.")
@click.option("--measure-steps", type=int, default=3,
              help="With --recipe: timed training steps for the throughput estimate (0: skip).")
@click.option("--data", default=None, help="Data for --arch (default: the preset's own shape).")
@click.option("--cond", type=click.Choice(COND_CHOICES), default="qac")
@click.option("--levels", type=int, default=2)
@click.option("--code-dim", type=int, default=8)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(run_dir: str | None, arch: str | None, recipe: str | None, measure_steps: int, data: str | None, cond: str,
         levels: int, code_dim: int, as_json: bool) -> None:
    """Config, parameter counts and code-usage statistics of a run (or of a preset or recipe)."""
    from qac.info import describe_preset, describe_recipe, describe_run

    if sum(x is not None for x in (run_dir, arch, recipe)) != 1:
        raise QACError("give exactly one of --run, --arch or --recipe")
    if recipe is not None:
        report = describe_recipe(recipe, measure_steps=measure_steps)
    elif run_dir:
        report = describe_run(Path(run_dir))
    else:
        report = describe_preset(arch, data, cond, levels, code_dim)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        if isinstance(value, dict):
            click.echo(f"{key}:")
            for k, v in value.items():
                click.echo(f"  {k}: {v}")
        else:
            click.echo(f"{key}: {value}")


@click.command()
@click.option("--out", type=click.Path(file_okay=False), default="runs/demo", help="Report folder to create.")
@click.option("--seed", type=click.IntRange(min=0, max=2**63 - 1), default=0,
              help="Seed for both trainings and all samples.")
@click.option("--steps", type=int, default=1500, help="Training steps per model.")
@click.option("--nfe", default="3,5,8,20", type=POSITIVE_INTS, help="Comma-separated NFE values to compare.")
@click.option("--num-eval", type=int, default=1000, help="Samples per (model, NFE) for the score.")
@click.option("--ste", type=click.Choice(STE_CHOICES), default=STE_DEFAULT, show_default=True,
              help="Quantizer gradient of the QAC model (see qac train --help); identity is the paper's.")
@click.option("--device", default="auto")
@click.option("--progress/--no-progress", default=True)
def demo(out: str, seed: int, steps: int, nfe: list[int], num_eval: int, ste: str, device: str, progress: bool) -> None:
    """Train a baseline and a QAC model on digits, compare them at several NFE, write a report."""
    from qac.demo import DemoConfig, run_demo
    from qac.safeio import check_writable

    nfes = tuple(nfe)
    if steps < 1 or num_eval < 2:
        raise QACError("--steps must be >= 1 and --num-eval >= 2")
    check_writable(out)
    res = run_demo(out, DemoConfig(seed=seed, steps=steps, nfe=nfes, num_eval=num_eval, ste=ste, device=device,
                                   progress=progress))
    click.echo(f"\n{'NFE':>4} {'baseline':>10} {'QAC':>10}   (proxy_pixel_fd, lower is better; "
               f"data floor {res['data_floor']:.3f})")
    for row in res["rows"]:
        click.echo(f"{row['nfe']:>4} {row['baseline']:>10.3f} {row['qac']:>10.3f}")
    click.echo(f"report: {Path(out) / 'report.md'} ({res['timings']['total_s']:.0f} s)")
