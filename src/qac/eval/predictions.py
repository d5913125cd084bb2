"""Intermediate x0-predictions along a sampling run (paper §4.1, Figure 3), drawn as a PNG strip.

Every solver reports, at the start of each step k, its state ``x_k`` at ``sigma_k`` and the denoiser output
``D(x_k; sigma_k)`` it uses there (``qac.sampling.solvers._common.report``). :class:`PredictionRecorder`
keeps those outputs; :func:`record_predictions` runs :func:`qac.sampling.generate.generate` with it, and
:func:`save_predictions` writes one picture and one ``.npz`` for one run or several runs sampled from the same
seeds (the same unit noise per seed; each conditional run draws its own codes), e.g. a baseline next to QAC.

Columns: one per reported step plus the final sample. An adaptive solver (rk45) reports at the points of its
grid only (its accepted inner steps are not drawn). Images give one row of tiles per seed (at most
:data:`MAX_ROWS`); 2-D points give one scatter of all seeds per column.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from qac.errors import QACError
from qac.model import QACModel
from qac.safeio import check_memory
from qac.sampling.generate import Generated, generate
from qac.viz import image_grid, save_png

MAX_ROWS = 64  # image rows (= seeds) in one strip
_TILE = 48     # target tile / scatter edge in pixels (images are scaled up by an integer factor)


@dataclass(frozen=True)
class Predictions:
    """The x0-predictions of one run at every step, for the seeds ``seeds``.

    ``predictions``: [K + 1, S, ...] float32: column k < K is ``D(x_k; sigma_k)`` at the start of step k, the
    last column is the final sample. ``sigmas``: [K + 1] the noise level (or time) of each column; the last one
    is the grid's end. ``start``: [S, ...] the initial state ``x_0 = sigma_0 * noise``. ``codes``: the code
    index per seed (-1 for a baseline).
    """

    name: str
    seeds: tuple[int, ...]
    sigmas: Tensor
    predictions: Tensor
    start: Tensor
    codes: Tensor
    nfe: int

    @property
    def samples(self) -> Tensor:
        """The final samples [S, ...], the last column of ``predictions``."""
        return self.predictions[-1]


class PredictionRecorder:
    """A sampling callback (``sample(..., callback=recorder)``) that keeps ``D`` at every step of every batch.

    A batch starts where a solver reports step 0; :meth:`finish` joins the batches in seed order.
    """

    def __init__(self) -> None:
        self._denoised: list[list[Tensor]] = []
        self._sigmas: list[list[float]] = []
        self._starts: list[Tensor] = []
        self._end: float | None = None

    def __call__(self, info: dict[str, Any]) -> None:
        """Keep one solver report (``i``, ``x``, ``denoised``, ``sigma`` or ``t``, ``sigma_next`` or ``t_next``) on CPU;
        a report of step 0 starts a new batch.
        """
        if info["i"] == 0:
            self._denoised.append([])
            self._sigmas.append([])
            self._starts.append(info["x"].detach().float().cpu())
        if not self._denoised:
            raise RuntimeError("a solver reported a step before step 0")
        self._denoised[-1].append(info["denoised"].detach().float().cpu())
        self._sigmas[-1].append(float(info.get("t", info["sigma"])))  # the rf protocol reports its time t
        self._end = float(info.get("t_next", info["sigma_next"]))

    def finish(self, name: str, seeds: Sequence[int], generated: Generated) -> Predictions:
        """The recorded predictions with ``generated.samples`` appended as the last column."""
        if not self._denoised:
            raise QACError("the solver reported no steps: nothing to draw")
        if any(s != self._sigmas[0] for s in self._sigmas[1:]):
            raise QACError("the solver reported different steps in different batches; sample in one batch")
        steps = torch.cat([torch.stack(batch) for batch in self._denoised], dim=1)
        samples = generated.samples.float().cpu()
        if steps.shape[1:] != samples.shape:
            raise RuntimeError(f"recorded {tuple(steps.shape[1:])} predictions for {tuple(samples.shape)} samples")
        sigmas = torch.tensor(self._sigmas[0] + [self._end], dtype=torch.float64)
        return Predictions(name, tuple(int(s) for s in seeds), sigmas, torch.cat([steps, samples[None]]),
                           torch.cat(self._starts), generated.indices.clone(), generated.nfe)


def check_request(num_seeds: int, item_shape: Sequence[int], columns: int, runs: int = 1) -> None:
    """Refuse (QACError) a strip with more than :data:`MAX_ROWS` image rows, or one that cannot fit in memory
    (about three float32 copies of ``runs x columns x seeds`` items: recorded, joined, saved)."""
    if len(item_shape) == 3 and num_seeds > MAX_ROWS:
        raise QACError(f"--save-predictions draws one row per seed: give at most {MAX_ROWS} seeds, got {num_seeds} "
                       "(e.g. --seeds 0-7)")
    need = 3 * 4.0 * runs * max(columns, 1) * num_seeds * math.prod(item_shape)
    check_memory(need, f"predictions of {num_seeds:,} seeds at {columns} steps", "sample fewer seeds or steps")


def check_comparable(shapes: dict[str, Sequence[int]]) -> None:
    """All runs of one picture must produce items of the same shape (they share the noise)."""
    (first, ref), *rest = shapes.items()
    for name, shape in rest:
        if tuple(shape) != tuple(ref):
            raise QACError(f"cannot compare {name} (items of shape {tuple(shape)}) with {first} "
                           f"(items of shape {tuple(ref)}): the runs must model the same data shape")


def record_predictions(model: QACModel, seeds: Sequence[int], *, name: str, **generate_opts: Any) -> Predictions:
    """Run :func:`qac.sampling.generate.generate` (same keywords: codes, solver, steps/nfe, schedule, ...) and
    keep ``D`` at every step. The samples equal those of a call without recording."""
    if "callback" in generate_opts or generate_opts.get("return_trajectory"):
        raise QACError("record_predictions sets the callback itself")
    recorder = PredictionRecorder()
    out = generate(model, seeds, callback=recorder, **generate_opts)
    return recorder.finish(name, seeds, out)


def save_predictions(runs: Sequence[Predictions], out_dir: str | Path, *, axis: str = "sigma",
                     stem: str = "predictions") -> tuple[Path, Path]:
    """Write ``<stem>.png`` (one panel per run, stacked, columns aligned) and ``<stem>.npz``.

    The ``.npz`` holds ``names``, ``seeds``, ``axis`` and per run r: ``predictions_r`` ([K + 1, S, ...],
    last = final samples), ``sigmas_r``, ``start_r`` (initial state), ``codes_r``, ``nfe_r``.
    """
    if not runs:
        raise QACError("no predictions to save")
    if any(r.seeds != runs[0].seeds for r in runs[1:]):
        raise QACError("runs in one prediction picture must use the same seeds")
    check_comparable({r.name: r.predictions.shape[2:] for r in runs})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"names": np.asarray([r.name for r in runs]), "seeds": np.asarray(runs[0].seeds),
                                     "axis": np.asarray(axis)}
    for i, r in enumerate(runs):
        arrays.update({f"predictions_{i}": r.predictions.numpy(), f"sigmas_{i}": r.sigmas.numpy(),
                       f"start_{i}": r.start.numpy(), f"codes_{i}": r.codes.numpy(), f"nfe_{i}": np.asarray(r.nfe)})
    npz = out / f"{stem}.npz"
    np.savez_compressed(npz, **arrays)
    png = save_png(render(runs, axis=axis), out / f"{stem}.png")
    return png, npz


def render(runs: Sequence[Predictions], *, axis: str = "sigma") -> Image.Image:
    """One panel per run, stacked top to bottom: a title, a label per column, then the tiles."""
    item_dims = runs[0].predictions.dim() - 2
    if item_dims == 3:
        panels = [_image_panel(r, axis) for r in runs]
    elif item_dims == 1:
        ext = max(float(r.samples.abs().max()) for r in runs) * 1.1
        panels = [_point_panel(r, axis, ext if math.isfinite(ext) and ext > 0 else 1.0) for r in runs]
    else:
        raise QACError(f"cannot draw items of shape {tuple(runs[0].predictions.shape[2:])}: images or points only")
    width, gap = max(p.width for p in panels), 6
    canvas = Image.new("RGB", (width, sum(p.height for p in panels) + gap * (len(panels) - 1)), "white")
    y = 0
    for p in panels:
        canvas.paste(p, (0, y))
        y += p.height + gap
    return canvas


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _labels(r: Predictions) -> list[str]:
    return [f"{v:.3g}" for v in r.sigmas[:-1].tolist()] + ["sample"]


def _panel(r: Predictions, axis: str, centers: list[float], body: Image.Image, left: int, row_names: list[str],
           row_h: int) -> Image.Image:
    """Title line, column labels centred at ``centers`` (x in ``body``), ``body`` below ``left`` pixels in, row
    names at the left every ``row_h`` pixels."""
    font, small = _font(12), _font(10)
    title_h, label_h = 18, 14
    img = Image.new("RGB", (left + body.width, title_h + label_h + body.height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((2, 2), f"{r.name}: x0-prediction D(x; {axis}) at each {axis} (NFE {r.nfe})", fill="black", font=font)
    for x, text in zip(centers, _labels(r)):
        draw.text((left + x - draw.textlength(text, font=small) / 2, title_h), text, fill=(60, 60, 60), font=small)
    img.paste(body, (left, title_h + label_h))
    for j, text in enumerate(row_names):
        draw.multiline_text((2, title_h + label_h + j * row_h + 4), text, fill=(60, 60, 60), font=small)
    return img


def _image_panel(r: Predictions, axis: str) -> Image.Image:
    cols, rows = r.predictions.shape[:2]
    h, w = r.predictions.shape[-2:]
    scale = max(1, _TILE // max(h, w))
    pad = 2
    tiles = r.predictions.transpose(0, 1).reshape(cols * rows, *r.predictions.shape[2:]).clamp(-1, 1)
    body = image_grid(tiles, nrow=cols, pad=pad, scale=scale).convert("RGB")
    names = [f"seed {s}" + (f"\ncode {c}" if c >= 0 else "") for s, c in zip(r.seeds, r.codes.tolist())]
    centers = [(pad + k * (w + pad) + w / 2) * scale for k in range(cols)]
    return _panel(r, axis, centers, body, 52, names, (h + pad) * scale)


def _point_panel(r: Predictions, axis: str, extent: float) -> Image.Image:
    cols = r.predictions.shape[0]
    size, pad = 2 * _TILE + 24, 4
    body = Image.new("RGB", (cols * (size + pad), size), "white")
    draw = ImageDraw.Draw(body)
    for k in range(cols):
        x0 = k * (size + pad)
        draw.rectangle((x0, 0, x0 + size - 1, size - 1), outline=(200, 200, 200))
        xy = ((r.predictions[k, :, :2].clamp(-extent, extent) / extent + 1) * 0.5 * (size - 3) + 1).tolist()
        for x, y in xy:
            draw.rectangle((x0 + x - 1, size - 1 - y - 1, x0 + x + 1, size - 1 - y + 1), fill=(30, 90, 200))
    return _panel(r, axis, [k * (size + pad) + size / 2 for k in range(cols)], body, 4, [], size)
