"""``qac sample``: images (or points) from a trained run with any registered solver."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from qac.cli.params import SEEDS
from qac.cli.sampling_opts import SamplingOptions, sampling_options
from qac.errors import QACError

if TYPE_CHECKING:  # annotations only: `qac sample --help` loads neither
    import numpy as np
    import torch

SAMPLE_BLOCK = 4096
"""Seeds generated per call of :func:`qac.sampling.generate.generate` before they are converted to what is kept."""
GRID_MAX = 256
"""Images drawn in grid.png (all of them up to this many; points are all drawn)."""


def check_kept_memory(num: int, item_shape: tuple[int, ...]) -> None:
    """Refuse up front a job whose kept samples cannot fit: uint8 images (float32 points) of every seed."""
    from qac.safeio import check_memory

    item = (1 if len(item_shape) == 3 else 4) * math.prod(item_shape)
    check_memory(2.0 * num * item, f"keeping {num:,} samples", "sample fewer seeds per call")


@dataclass(frozen=True)
class _Kept:
    """What one process keeps of its seeds: samples as samples.npz holds them (uint8 NHWC images or float
    points), code indices, NFE, the count of non-finite samples, the first images for grid.png, rk45 counts."""

    samples: np.ndarray
    codes: np.ndarray
    nfe: int
    bad: int
    preview: torch.Tensor
    stats: dict[str, int] | None


def _sample_blocks(model, seeds: list[int], block: int, show: bool, desc: str, **gen_kw) -> tuple[_Kept, object]:
    """:func:`qac.sampling.generate.generate` over ``seeds`` in blocks, each turned into what is kept before the
    next (samples are per seed, so blocks change nothing); returns the kept part and the last block's result."""
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from qac.sampling.generate import add_stats, generate
    from qac.viz import to_uint8

    kept, codes, preview, bad, stats, res = [], [], [], 0, None, None
    with tqdm(total=len(seeds), desc=desc, unit="img", disable=not show) as bar:
        for lo in range(0, len(seeds), block):
            res = generate(model, seeds[lo:lo + block], progress=bar.update, **gen_kw)
            s = res.samples.cpu()
            bad += int((~torch.isfinite(s)).flatten(1).any(1).sum())
            kept.append(to_uint8(s) if s.ndim == 4 else s.numpy())
            codes.append(res.indices.cpu().numpy())
            if s.ndim == 2 or sum(len(p) for p in preview) < GRID_MAX:
                preview.append(s if s.ndim == 2 else s[:GRID_MAX])
            stats = add_stats(stats, res.stats)
    return _Kept(np.concatenate(kept), np.concatenate(codes), res.nfe, bad, torch.cat(preview), stats), res


@click.command()
@click.option("--run", "run_dir", type=click.Path(), required=True, help="Run folder from `qac train`.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: RUN/samples/<solver>-nfe<N>).")
@click.option("--seeds", default="0-63", type=SEEDS, help="Seeds, e.g. 0-63 or 1,5,9; sample k depends only on seed k.")
@sampling_options(solver="heun", steps_help="solver steps (default: 18, or set --nfe)")
@click.option("--code", "code_index", type=int, default=None, help="Use this code index for every sample.")
@click.option("--code-from", "code_image", type=click.Path(), default=None,
              help="Use the code of this image (encoded by the EMA encoder).")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=256, help="Seeds per solver batch.")
@click.option("--device", default="auto")
@click.option("--raw-weights", is_flag=True, help="Use the raw (non-EMA) weights.")
@click.option("--aligner", type=click.Path(dir_okay=False), default=None, help="Aligner JSON from `qac align`.")
@click.option("--save-predictions", is_flag=True,
              help="Also write predictions.png/.npz: the x0-prediction D at every step, one row per seed (Fig. 3).")
@click.option("--compare", "compare_dir", type=click.Path(), default=None,
              help="A second run sampled from the same seeds (same noise; its own codes from --codes) and drawn "
                   "under --run in predictions.png; implies --save-predictions.")
def sample(run_dir: str, out: str | None, seeds: list[int], sampling: SamplingOptions, code_index: int | None,
           code_image: str | None, batch_size: int, device: str, raw_weights: bool, aligner: str | None,
           save_predictions: bool, compare_dir: str | None) -> None:
    """Generate samples; writes samples.npz (samples as uint8 images or float points, seeds, code indices, NFE)
    and grid.png (the first 256 images).

    ``--save-predictions`` / ``--compare RUN`` add predictions.png and predictions.npz: the x0-prediction at
    every step (paper Figure 3; :mod:`qac.eval.predictions`).

    Under ``torchrun --nproc_per_node=K -m qac sample`` every process samples a block of the seeds and rank 0
    writes them all (identical to one process: sample k depends only on seed k).
    """
    import numpy as np
    import torch

    from qac.safeio import check_writable
    from qac.sampling.generate import add_stats
    from qac.sampling.spec import DEFAULT_STEPS
    from qac.train.distributed import gather_objects, init_distributed, rank_device, shard
    from qac.train.run import load_run
    from qac.util import resolve_device
    from qac.viz import save_samples_picture

    spec = sampling.spec()  # fail on a typo or a bad combination before loading anything
    resolve_device(device)
    info = init_distributed(device)
    run = load_run(run_dir, device=rank_device(device, info), ema=not raw_weights)
    if aligner is not None and spec.schedule == "auto":
        spec = spec.replace(schedule="polynomial")  # aligners live on sigma schedules
    spec = spec.for_formulation(run.model.formulation.name)
    if aligner is None:
        spec = spec.with_default_steps()
    solver = spec.solver
    check_writable(out if out else Path(run_dir) / "samples")
    recorder, other, other_spec = None, None, None
    if save_predictions or compare_dir:
        if compare_dir:
            other = load_run(compare_dir, device=rank_device(device, info), ema=not raw_weights)
            other_spec = sampling.spec().for_formulation(other.model.formulation.name).with_default_steps()
        recorder = _prediction_recorder(run, other, seeds, spec.steps or spec.nfe or DEFAULT_STEPS, info.enabled,
                                        aligner)
    factory = None
    if aligner is not None:
        from qac.align import aligner_for_run

        factory, nfe = aligner_for_run(aligner, run, solver=solver, nfe=spec.nfe, steps=spec.steps, afs=spec.afs,
                                       schedule=spec.schedule, sigma_min=spec.sigma_min, sigma_max=spec.sigma_max,
                                       rho=spec.rho)
        spec = spec.replace(nfe=nfe)
    indices, weights = None, None
    if run.model.cond in ("rne", "vae"):
        _refuse_code_options(run.model.cond, spec.codes, code_index, code_image)
    if run.model.conditional:
        if code_index is not None and code_image is not None:
            raise QACError("give at most one of --code and --code-from")
        if code_index is not None:
            indices = code_index
        elif code_image is not None:
            indices = _code_of_image(run, Path(code_image))
        else:
            weights = run.code_weights(spec.codes)
    mine = seeds[shard(len(seeds), info)]
    check_kept_memory(len(seeds), run.model.item_shape)
    block = len(mine) if recorder is not None else max(batch_size, SAMPLE_BLOCK)  # predictions: one call
    part, res = (_sample_blocks(run.model, mine, block, info.is_main, f"sample {solver}", code_weights=weights,
                                indices=indices, batch_size=batch_size, denoise_factory=factory, callback=recorder,
                                **spec.sample_kwargs()) if mine else (None, None))
    parts: list[_Kept] = [p for p in gather_objects(part, info) if p is not None]
    if not info.is_main:
        return
    bad = sum(p.bad for p in parts)
    if bad:
        raise QACError(f"{bad} of {len(seeds)} samples are NaN/Inf: the weights of {run_dir} (step {run.step}) "
                       "are diverged or damaged; nothing was written")
    used_nfe = parts[0].nfe
    out_dir = Path(out) if out else Path(run_dir) / "samples" / f"{solver}-nfe{used_nfe}"
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_dir / "samples.npz", seeds=np.asarray(seeds),
                        codes=np.concatenate([p.codes for p in parts]), nfe=np.asarray(used_nfe),
                        samples=np.concatenate([p.samples for p in parts]))
    shown = torch.cat([p.preview for p in parts])
    shown = shown if shown.ndim == 2 else shown[:GRID_MAX]
    scale = max(1, 64 // shown.shape[-1]) if shown.ndim == 4 else 1
    save_samples_picture(shown, out_dir / "grid.png", scale=scale)
    stats = None
    for p in parts:
        stats = add_stats(stats, p.stats)
    steps = f" ({stats['accepted']} accepted, {stats['rejected']} rejected steps)" if stats else ""
    grid = "grid.png" if len(shown) == len(seeds) else f"grid.png (the first {len(shown)})"
    click.echo(f"{len(seeds)} samples with {solver} ({spec.schedule}) at NFE {used_nfe}{steps} -> "
               f"{out_dir}/{grid}, samples.npz")
    if recorder is not None:
        from qac.eval import predictions as fig3

        runs = [recorder.finish(run.path.resolve().name, seeds, res)]
        if other is not None:
            runs.append(fig3.record_predictions(other.model, seeds, name=other.path.resolve().name,
                                                code_weights=other.code_weights(spec.codes), batch_size=batch_size,
                                                **other_spec.sample_kwargs()))
        png, _ = fig3.save_predictions(runs, out_dir, axis="t" if spec.schedule == "flow" else "sigma")
        click.echo(f"x0-predictions at {len(runs[0].sigmas) - 1} steps of {len(runs)} run(s) -> {png}, "
                   "predictions.npz")


def _prediction_recorder(run, other, seeds: list[int], steps: int, distributed: bool, aligner: str | None):
    """Check a --save-predictions/--compare request before sampling; returns the recorder for the main run."""
    from qac.eval.predictions import PredictionRecorder, check_comparable, check_request

    if distributed:
        raise QACError("--save-predictions runs in one process (not under torchrun)")
    if other is not None:
        if aligner is not None:
            raise QACError("--compare cannot use --aligner: an aligner belongs to one run")
        check_comparable({str(run.path): run.model.item_shape, str(other.path): other.model.item_shape})
    check_request(len(seeds), run.model.item_shape, steps + 1, runs=1 if other is None else 2)
    return PredictionRecorder()


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
