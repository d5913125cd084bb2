"""Scores of edited images against the originals: PSNR and SSIM per image.

Images are in [-1, 1] (data range 2); results are clamped to that range before scoring, as they are when
saved as PNG. SSIM is scikit-image's ``structural_similarity`` (Wang et al. 2004, its default 7×7 uniform window,
channels averaged), an optional dependency: ``pip install 'qac[edit]'``.

>>> import torch
>>> ref = torch.zeros(1, 1, 8, 8)
>>> round(float(psnr(ref + 0.2, ref)[0]), 3)  # 10 log10(2^2 / 0.2^2)
20.0
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from qac.errors import QACError

DATA_RANGE = 2.0
MAX_PSNR = 100.0  # dB, reported for an exact match instead of infinity
SSIM_MISSING = "SSIM needs scikit-image, which is not installed (pip install 'qac[edit]' or scikit-image)"


def psnr(x: Tensor, ref: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB per image: ``10 log10(range² / MSE)``, capped at 100 dB."""
    mse = (x.double().clamp(-1, 1) - ref.double()).pow(2).flatten(1).mean(dim=1)
    return (10 * torch.log10(DATA_RANGE**2 / mse.clamp(min=DATA_RANGE**2 * 10 ** (-MAX_PSNR / 10)))).float()


def ssim_available() -> bool:
    """Whether scikit-image can be imported."""
    try:
        import skimage.metrics  # noqa: F401
    except ImportError:
        return False
    return True


def ssim(x: Tensor, ref: Tensor) -> Tensor:
    """Structural similarity per image ([N, C, H, W]; H, W >= 7) with scikit-image, data range 2."""
    try:
        from skimage.metrics import structural_similarity
    except ImportError:
        raise QACError(SSIM_MISSING) from None
    if min(x.shape[-2:]) < 7:
        raise QACError(f"SSIM needs images of at least 7x7 pixels, got {tuple(x.shape[-2:])}")
    a = x.double().clamp(-1, 1).permute(0, 2, 3, 1).cpu().numpy()
    b = ref.double().permute(0, 2, 3, 1).cpu().numpy()
    vals = [structural_similarity(u, v, data_range=DATA_RANGE, channel_axis=2) for u, v in zip(a, b)]
    return torch.tensor(np.asarray(vals, dtype=np.float32))


def mean_std(values: Tensor) -> tuple[float, float]:
    """Mean and (population) standard deviation of a flat tensor of scores."""
    v = values.double().flatten()
    return float(v.mean()), float(v.std(unbiased=False))
