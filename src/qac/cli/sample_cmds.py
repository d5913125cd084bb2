"""``qac sample``: images (or points) from a trained run with any registered solver."""

from __future__ import annotations

from pathlib import Path

import click

from qac.cli.params import SEEDS
from qac.errors import QACError


def parse_solver_opts(items: tuple[str, ...]) -> dict[str, float | int | str | None]:
    """``("S_churn=40", "top_order_h=none")`` -> ``{"S_churn": 40, "top_order_h": None}`` (``none`` switches off)."""
    opts: dict[str, float | int | str | None] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise QACError(f"solver option {item!r} must look like NAME=VALUE")
        if value.lower() == "none":
            opts[key] = None
            continue
        for cast in (int, float):
            try:
                opts[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            opts[key] = value
    return opts


@click.command()
@click.option("--run", "run_dir", type=click.Path(), required=True, help="Run folder from `qac train`.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: RUN/samples/<solver>-nfe<N>).")
@click.option("--seeds", default="0-63", type=SEEDS, help="Seeds, e.g. 0-63 or 1,5,9; sample k depends only on seed k.")
@click.option("--solver", default="heun", help="Solver name (`qac solvers` lists them).")
@click.option("--steps", type=int, default=None, help="Solver steps (default: 18, or set --nfe).")
@click.option("--nfe", type=int, default=None, help="Exact number of network evaluations.")
@click.option("--schedule", default="polynomial", help="polynomial, logsnr or time_uniform.")
@click.option("--afs", is_flag=True, help="Analytical first step (saves one evaluation).")
@click.option("--sigma-min", type=float, default=0.002)
@click.option("--sigma-max", type=float, default=80.0)
@click.option("--rho", type=float, default=None, help="Polynomial schedule exponent (default 7).")
@click.option("--opt", "solver_opts", multiple=True, help="Solver option NAME=VALUE (repeatable).")
@click.option("--codes", "code_source", type=click.Choice(["online", "offline", "uniform"]), default="online",
              help="Code weights to draw codes from: online EMA histogram, offline collection, or uniform "
                   "over used codes.")
@click.option("--code", "code_index", type=int, default=None, help="Use this code index for every sample.")
@click.option("--code-from", "code_image", type=click.Path(), default=None,
              help="Use the code of this image (encoded by the EMA encoder).")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=256, help="Seeds per solver batch.")
@click.option("--device", default="auto")
@click.option("--raw-weights", is_flag=True, help="Use the raw (non-EMA) weights.")
@click.option("--aligner", type=click.Path(dir_okay=False), default=None, help="Aligner JSON from `qac align`.")
def sample(run_dir: str, out: str | None, seeds: list[int], solver: str, steps: int | None, nfe: int | None,
           schedule: str, afs: bool, sigma_min: float, sigma_max: float, rho: float | None,
           solver_opts: tuple[str, ...], code_source: str, code_index: int | None, code_image: str | None,
           batch_size: int, device: str, raw_weights: bool, aligner: str | None) -> None:
    """Generate samples; writes grid.png and samples.npz (samples, seeds, code indices, NFE).

    Under ``torchrun --nproc_per_node=K -m qac sample`` every process samples a block of the seeds and rank 0
    writes them all (identical to one process: sample k depends only on seed k).
    """
    import numpy as np
    import torch

    from qac.safeio import check_writable
    from qac.sampling import get_solver
    from qac.sampling.generate import generate
    from qac.train.distributed import gather_objects, init_distributed, rank_device, shard
    from qac.train.run import load_run
    from qac.util import resolve_device
    from qac.viz import save_samples_picture, to_uint8

    get_solver(solver)  # fail on a typo before loading anything
    opts = parse_solver_opts(solver_opts)
    resolve_device(device)
    if steps is None and nfe is None and aligner is None:
        steps = 18
    info = init_distributed(device)
    run = load_run(run_dir, device=rank_device(device, info), ema=not raw_weights)
    check_writable(out if out else Path(run_dir) / "samples")
    factory = None
    if aligner is not None:
        from qac.align import aligner_for_run

        factory, nfe = aligner_for_run(aligner, run, solver=solver, nfe=nfe, steps=steps, afs=afs, schedule=schedule,
                                       sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
    indices, weights = None, None
    if run.model.cond in ("rne", "vae"):
        _refuse_code_options(run.model.cond, code_source, code_index, code_image)
    if run.model.conditional:
        if code_index is not None and code_image is not None:
            raise QACError("give at most one of --code and --code-from")
        if code_index is not None:
            indices = code_index
        elif code_image is not None:
            indices = _code_of_image(run, Path(code_image))
        else:
            weights = run.code_weights("offline" if code_source == "offline" else "online")
            if code_source == "uniform":
                weights = weights.uniform_over_used()
    from tqdm.auto import tqdm

    mine = seeds[shard(len(seeds), info)]
    part = None
    if mine:
        with tqdm(total=len(mine), desc=f"sample {solver}", unit="img", disable=not info.is_main) as bar:
            res = generate(run.model, mine, code_weights=weights, indices=indices, solver=solver, steps=steps,
                           nfe=nfe, batch_size=batch_size, schedule=schedule, afs=afs, sigma_min=sigma_min,
                           sigma_max=sigma_max, rho=rho, progress=bar.update,
                           denoise_factory=factory, **opts)
        part = (res.samples.cpu(), res.indices.cpu(), res.nfe)
    parts = [p for p in gather_objects(part, info) if p is not None]
    if not info.is_main:
        return
    samples, codes, used_nfe = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), parts[0][2]
    bad = int((~torch.isfinite(samples)).flatten(1).any(1).sum())
    if bad:
        raise QACError(f"{bad} of {len(seeds)} samples are NaN/Inf: the weights of {run_dir} (step {run.step}) "
                       "are diverged or damaged; nothing was written")
    out_dir = Path(out) if out else Path(run_dir) / "samples" / f"{solver}-nfe{used_nfe}"
    out_dir.mkdir(parents=True, exist_ok=True)
    arrays = {"seeds": np.asarray(seeds), "codes": codes.numpy(), "nfe": np.asarray(used_nfe)}
    arrays["samples"] = to_uint8(samples) if samples.ndim == 4 else samples.numpy()
    np.savez_compressed(out_dir / "samples.npz", **arrays)
    scale = max(1, 64 // samples.shape[-1]) if samples.ndim == 4 else 1
    save_samples_picture(samples, out_dir / "grid.png", scale=scale)
    click.echo(f"{len(seeds)} samples with {solver} at NFE {used_nfe} -> {out_dir}/grid.png, samples.npz")


def _refuse_code_options(cond: str, code_source: str, code_index: int | None, code_image: str | None) -> None:
    """A run without QAC code weights (rne, vae) has no codes to pick or weigh: refuse the options that ask."""
    draws = {"rne": "its noise from N(0, I) and has no code",
             "vae": "its continuous code from N(0, I) per seed"}[cond]
    asked = [opt for opt, given in (("--code", code_index is not None), ("--code-from", code_image is not None),
                                    (f"--codes {code_source}", code_source != "online")) if given]
    if asked:
        raise QACError(f"{asked[0]} needs QAC code weights; this run was trained with --cond {cond}, which draws "
                       f"{draws} (drop {asked[0]})")


def _code_of_image(run, path: Path) -> int:
    """Encode one image file with the run's EMA encoder; returns its code index."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    if len(run.model.item_shape) != 3:
        raise QACError("--code-from works for image models only")
    c, h, w = run.model.item_shape
    try:
        img = Image.open(path)
        img = img.convert("L" if c == 1 else "RGB").resize((w, h), Image.BICUBIC)
    except (FileNotFoundError, UnidentifiedImageError, OSError) as exc:
        raise QACError(f"cannot read image {path}: {exc}") from None
    arr = np.asarray(img, dtype=np.float32).reshape(h, w, c).transpose(2, 0, 1) / 127.5 - 1
    x = torch.from_numpy(arr)[None].to(next(run.model.parameters()).device)
    with torch.no_grad():
        _, idx = run.model.encode(x)
    return int(idx[0])
