"""Pictures without ceremony: image grids and 2-D point clouds as PNG (Pillow only)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from qac.util import atomic_write_bytes


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1,1] float NCHW -> uint8 NHWC (EDM rounding: clip((x+1)*127.5 + 0.5))."""
    x = (images.detach().float().cpu() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 1, scale: int = 1) -> Image.Image:
    """Tile a batch of [-1,1] images (NCHW) into one PIL image, ``nrow`` per row (default: square-ish)."""
    arr = to_uint8(images)
    n, h, w, c = arr.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    canvas = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        y0, x0 = pad + r * (h + pad), pad + col * (w + pad)
        canvas[y0:y0 + h, x0:x0 + w] = arr[i]
    img = Image.fromarray(canvas[..., 0] if c == 1 else canvas)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return img


def scatter_image(points: torch.Tensor, size: int = 320, extent: float | None = None,
                  color: tuple[int, int, int] = (30, 90, 200)) -> Image.Image:
    """Render 2-D points [N, 2] as a scatter plot on a white square."""
    p = points.detach().float().cpu()[:, :2]
    ext = extent or float(p.abs().max().clamp(min=1e-6)) * 1.05
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    xy = ((p / ext + 1) * 0.5 * (size - 1)).numpy()
    for x, y in xy:
        draw.point((float(x), float(size - 1 - y)), fill=color)
    return img


def save_png(img: Image.Image, path: str | Path) -> Path:
    """Atomically write a PIL image as PNG."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def save_samples_picture(samples: torch.Tensor, path: str | Path, nrow: int | None = None,
                         scale: int = 1) -> Path:
    """A grid for images (NCHW) or a scatter plot for points (N, D)."""
    if samples.ndim == 4:
        return save_png(image_grid(samples, nrow=nrow, scale=scale), path)
    return save_png(scatter_image(samples), path)
