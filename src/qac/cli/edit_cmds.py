"""``qac edit``: zero-shot super-resolution, colorization and inpainting with a trained run (Algorithm 2)."""

from __future__ import annotations

import click

from qac.cli.params import SEEDS
from qac.errors import QACError

TASK_NAMES = ("sr2", "sr4", "sr8", "colorize", "inpaint-box", "inpaint-random", "inpaint-half", "inpaint-mask")


@click.command()
@click.option("--run", "run_dir", type=click.Path(), required=True, help="Run folder from `qac train`.")
@click.option("--task", required=True,
              help=f"One of {', '.join(TASK_NAMES)}; join with + to compose (e.g. sr2+inpaint-box).")
@click.option("--input", "input_path", type=click.Path(), default=None, help="An image file or a folder of images.")
@click.option("--data", default=None, help="A data set (digits16, a folder, a zip, ...): edit --num of its images.")
@click.option("--num", type=click.IntRange(min=1), default=8, help="How many data-set images to edit.")
@click.option("--data-seed", type=int, default=0, help="Seed of the data-set subset.")
@click.option("--degraded-input", is_flag=True,
              help="The inputs are already degraded measurements (low-res for sr, gray for colorize); "
                   "the original is then unknown and no PSNR/SSIM is computed.")
@click.option("--mask", "mask_png", type=click.Path(), default=None,
              help="Mask PNG for inpaint-mask (white = missing).")
@click.option("--mask-fraction", type=click.FloatRange(0, 1), default=0.5,
              help="Missing fraction for inpaint-random.")
@click.option("--mask-seed", type=int, default=0, help="Seed of the inpaint-random mask.")
@click.option("--steps", type=int, default=40, help="N, the number of noise levels (paper: 40).")
@click.option("--schedule", default="polynomial", help="polynomial (Karras), logsnr or time_uniform.")
@click.option("--sigma-min", type=float, default=None, help="Smallest sigma (default: the model's, 0.002).")
@click.option("--sigma-max", type=float, default=None, help="Largest sigma (default: the model's, 80).")
@click.option("--rho", type=float, default=None, help="Polynomial schedule exponent (default 7).")
@click.option("--seeds", default="0", type=SEEDS, help="One result per seed and input, e.g. 0-3.")
@click.option("--code", type=click.Choice(["adaptive", "fixed", "none"]), default=None,
              help="adaptive: re-encode the estimate each step (paper); fixed: the degraded input's code; "
                   "none: baseline run. Default: adaptive for QAC runs, none for baselines.")
@click.option("--projection", type=click.Choice(["nullspace", "literal"]), default="nullspace",
              help="Line 8 of Algorithm 2: nullspace keeps x outside the range of the pseudo-inverse (default); "
                   "literal is the paper's formula read with a non-invertible A.")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=64)
@click.option("--device", default="auto")
@click.option("--raw-weights", is_flag=True, help="Use the raw (non-EMA) weights.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder.")
def edit(run_dir: str, task: str, input_path: str | None, data: str | None, num: int, data_seed: int,
         degraded_input: bool, mask_png: str | None, mask_fraction: float, mask_seed: int, steps: int,
         schedule: str, sigma_min: float | None, sigma_max: float | None, rho: float | None, seeds: list[int],
         code: str | None, projection: str, batch_size: int, device: str, raw_weights: bool, out: str) -> None:
    """Edit images with Algorithm 2; writes edit-*.png, overview.png, edits.npz and metrics.json."""
    if (input_path is None) == (data is None):
        raise QACError("give exactly one of --input IMAGE_OR_FOLDER and --data DATASET")
    if degraded_input and input_path is None:
        raise QACError("--degraded-input goes with --input (a data set holds originals)")
    from tqdm.auto import tqdm

    from qac.edit import MaskOptions, edit_sigmas, make_degradation
    from qac.edit.algorithm import edit as run_edit
    from qac.edit.algorithm import resolve_code_mode
    from qac.edit.io import read_images, write_outputs
    from qac.train.run import load_run

    run = load_run(run_dir, device=device, ema=not raw_weights)
    model = run.model
    if len(model.item_shape) != 3:
        raise QACError("qac edit needs an image model; this run was trained on points")
    deg = make_degradation(task, model.item_shape, projection=projection,
                           mask=MaskOptions(png=mask_png, fraction=mask_fraction, seed=mask_seed))
    mode = resolve_code_mode(model, code)
    sigmas = edit_sigmas(model, steps, schedule, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
    if input_path is not None:
        shape = deg.op.measurement_shape(model.item_shape) if degraded_input else model.item_shape
        images, names = read_images(input_path, shape)
        if degraded_input:
            images = deg.op.pinv(images)
    else:
        from qac.data import open_dataset

        ds = open_dataset(data, resolution=run.config.resolution, max_items=num, seed=data_seed)
        if ds.kind != "image" or tuple(ds.shape) != tuple(model.item_shape):
            raise QACError(f"data set {data!r} has items {tuple(ds.shape)}, the model needs {model.item_shape}")
        images, names = ds.as_float(), [f"{data_seed}-{i}" for i in range(len(ds))]
    total = len(images) * len(seeds) * len(sigmas)
    with tqdm(total=total, desc=f"edit {task}", unit="step") as bar:
        res = run_edit(model, images, task=deg, seeds=seeds, steps=steps, schedule=schedule, sigma_min=sigma_min,
                       sigma_max=sigma_max, rho=rho, code=mode, batch_size=batch_size, progress=bar.update)
    metrics = write_outputs(res, out, names, originals=None if degraded_input else images)
    line = f"{len(images)} input(s) x {len(seeds)} seed(s), {task}, code {mode}, N = {len(sigmas)}"
    if "psnr" in metrics:
        line += f": PSNR {metrics['psnr']['mean']:.2f} dB (degraded input {metrics['psnr']['degraded_input']:.2f})"
    if metrics.get("ssim_note"):
        click.echo(f"note: {metrics['ssim_note']}", err=True)
    click.echo(f"{line} -> {out}/overview.png, edits.npz, metrics.json")
