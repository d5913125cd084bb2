"""Inpainting masks Ω for Algorithm 2 (paper §4.4).

Convention (the one place it is stated): **Ω = 1 marks what is missing** (to be generated), Ω = 0 what is
kept from the reference. Ω lives in measurement space (the output of the operator ``A``) with shape
``[1, H', W']`` and broadcasts over channels; values are exactly 0.0 or 1.0.

Built-in masks, for a measurement of height h and width w:

* ``box`` — a centred box of ``h//2 × w//2`` pixels;
* ``random`` — each pixel missing independently with probability ``fraction``, from a seeded generator;
* ``half`` — the right half (columns ``w//2 ..``);
* ``png`` — a picture: white (>= 128 after conversion to grayscale) = missing, black = kept; resized with
  nearest neighbour when its aspect ratio matches the measurement's, an error otherwise.

>>> box_mask((1, 4, 4))[0].tolist()
[[0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
>>> half_mask((1, 2, 4))[0].tolist()
[[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from qac.errors import QACError
from qac.util import seed_generator


def no_mask(shape: tuple[int, int, int]) -> Tensor:
    """Ω = 0: every measurement is kept (super-resolution, colorization)."""
    return torch.zeros(1, shape[1], shape[2])


def box_mask(shape: tuple[int, int, int]) -> Tensor:
    """A centred ``h//2 × w//2`` box is missing."""
    _, h, w = shape
    bh, bw = max(1, h // 2), max(1, w // 2)
    top, left = (h - bh) // 2, (w - bw) // 2
    mask = torch.zeros(1, h, w)
    mask[:, top:top + bh, left:left + bw] = 1.0
    return mask


def half_mask(shape: tuple[int, int, int]) -> Tensor:
    """The right half (columns ``w//2`` onwards) is missing."""
    _, h, w = shape
    mask = torch.zeros(1, h, w)
    mask[:, :, w // 2:] = 1.0
    return mask


def random_mask(shape: tuple[int, int, int], fraction: float = 0.5, seed: int = 0) -> Tensor:
    """Each pixel is missing with probability ``fraction``, drawn from a generator seeded with ``seed``."""
    if not 0.0 <= fraction <= 1.0:
        raise QACError(f"the missing fraction of a random mask must be in [0, 1], got {fraction}")
    _, h, w = shape
    u = torch.rand(1, h, w, generator=seed_generator(seed))
    return (u < fraction).to(torch.float32)


def png_mask(path: str | Path, shape: tuple[int, int, int]) -> Tensor:
    """Read a PNG mask (white = missing) and fit it to the measurement ``shape`` with nearest neighbour."""
    path = Path(path)
    _, h, w = shape
    try:
        with Image.open(path) as img:
            if img.format != "PNG":
                raise QACError(f"mask {path} is not a PNG file (it is {img.format})")
            img.load()
            gray = img.convert("L")
    except FileNotFoundError:
        raise QACError(f"mask file {path} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise QACError(f"cannot read mask {path}: not a PNG image") from exc
    mw, mh = gray.size
    if mw * h != mh * w:
        raise QACError(f"mask {path} is {mh}x{mw}, which cannot be resized to the {h}x{w} measurement "
                       "(different aspect ratio)")
    if (mw, mh) != (w, h):
        gray = gray.resize((w, h), Image.NEAREST)
    arr = np.asarray(gray, dtype=np.uint8) >= 128
    return torch.from_numpy(arr.astype(np.float32))[None]
