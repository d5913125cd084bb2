"""Reading images to edit and writing what ``qac edit`` produces.

Outputs in one folder:

* ``edit-XXXX.png`` — one row per input: original (when known) | degraded | one result per seed;
* ``overview.png`` — the same rows stacked for all inputs;
* ``edits.npz`` — ``inputs``, ``degraded`` (uint8 NHWC), ``results`` (uint8 [K, S, H, W, C]), ``codes``
  ([K, S, N] code index per step, -1 for a baseline), ``seeds``, ``sigmas``, ``kept_error`` ([K, S]);
* ``metrics.json`` — PSNR/SSIM against the original (when known) of the results and of the degraded input
  (the floor to beat), and the data-consistency error ``‖(Ax − Az)⊙(1−Ω)‖₂`` on the kept part.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from qac.edit.algorithm import EditResult
from qac.edit.metrics import SSIM_MISSING, mean_std, psnr, ssim, ssim_available
from qac.errors import QACError
from qac.util import atomic_write_bytes, atomic_write_json
from qac.viz import image_grid, save_png, to_uint8

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def list_images(path: str | Path) -> list[Path]:
    """``path`` itself if it is a file, else the image files directly inside the folder (sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise QACError(f"input {path} does not exist")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise QACError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
    return files


def read_image(path: Path, shape: tuple[int, int, int]) -> Tensor:
    """One image as a float [C, H, W] tensor in [-1, 1]; grayscale/RGB converted to ``C``; size must match."""
    c, h, w = shape
    try:
        with Image.open(path) as img:
            img.load()
            img = img.convert("L" if c == 1 else "RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise QACError(f"cannot read image {path}: not a recognised or intact image file") from exc
    if img.size != (w, h):
        raise QACError(f"image {path} is {img.size[1]}x{img.size[0]}, but {h}x{w} is needed here")
    arr = np.asarray(img, dtype=np.float32).reshape(h, w, c).transpose(2, 0, 1)
    return torch.from_numpy(arr / 127.5 - 1.0)


def read_images(path: str | Path, shape: tuple[int, int, int]) -> tuple[Tensor, list[str]]:
    """All inputs under ``path`` as [K, C, H, W] in [-1, 1] plus their file stems."""
    files = list_images(path)
    return torch.stack([read_image(f, shape) for f in files]), [f.stem for f in files]


def score(result: EditResult, originals: Tensor | None) -> dict[str, Any]:
    """The numbers of ``metrics.json`` (summary over all inputs × seeds, and per input)."""
    k, s = result.results.shape[:2]
    err = result.kept_error
    out: dict[str, Any] = {
        "task": result.task, "code": result.code, "projection": result.projection,
        "steps": len(result.sigmas), "sigma_max": float(result.sigmas[0]), "sigma_min": float(result.sigmas[-1]),
        "seeds": list(result.seeds), "num_inputs": k,
        "calls_per_sample": {"denoiser": result.denoiser_calls, "encoder": result.encoder_calls},
        "kept_error": {"mean": float(err.mean()), "max": float(err.max()),
                       "definition": "L2 norm of (A x - A z) * (1 - Omega) per result, x not clamped"},
    }
    if originals is None:
        out["note"] = "original unknown (degraded inputs given): no PSNR/SSIM"
        return out
    flat = result.results.reshape(k * s, *result.results.shape[2:])
    refs = originals.repeat_interleave(s, dim=0)
    metrics = {"psnr": psnr} | ({"ssim": ssim} if ssim_available() else {})
    for name, fn in metrics.items():
        vals = fn(flat, refs).reshape(k, s)
        floor = fn(result.degraded, originals)
        m, sd = mean_std(vals)
        out[name] = {"mean": m, "std": sd, "degraded_input": mean_std(floor)[0], "per_input": vals.tolist()}
    if "ssim" not in metrics:
        out["ssim"] = None
        out["ssim_note"] = SSIM_MISSING
    return out


def write_outputs(result: EditResult, out_dir: str | Path, names: Sequence[str], *,
                  originals: Tensor | None) -> dict[str, Any]:
    """Write the pictures, ``edits.npz`` and ``metrics.json`` into ``out_dir``; returns the metrics."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    k, s = result.results.shape[:2]
    h = result.results.shape[-1]
    scale = max(1, 96 // h)
    rows = []
    for i in range(k):
        row = ([originals[i:i + 1]] if originals is not None else []) + [result.degraded[i:i + 1]]
        row.append(result.results[i].clamp(-1, 1).to(result.degraded.dtype))
        row_t = torch.cat(row)
        rows.append(row_t)
        save_png(image_grid(row_t, nrow=len(row_t), scale=scale), out_dir / f"edit-{i:04d}-{names[i]}.png")
    save_png(image_grid(torch.cat(rows), nrow=len(rows[0]), scale=scale), out_dir / "overview.png")
    res = to_uint8(result.results.flatten(0, 1))
    buf = io.BytesIO()
    np.savez_compressed(buf, inputs=to_uint8(result.inputs), degraded=to_uint8(result.degraded),
                        results=res.reshape(k, s, *res.shape[1:]),
                        codes=result.codes.numpy(), seeds=np.asarray(result.seeds),
                        sigmas=result.sigmas.numpy(), kept_error=result.kept_error.numpy(),
                        names=np.asarray(list(names)))
    atomic_write_bytes(out_dir / "edits.npz", buf.getvalue())
    metrics = score(result, originals)
    atomic_write_json(out_dir / "metrics.json", metrics)
    return metrics
