"""Zero-shot image editing with adaptive conditions (paper §4.4, Algorithm 2).

Super-resolution, colorization and inpainting with a trained QAC model (or a baseline), no extra training:

>>> import torch
>>> from qac.model import ModelConfig, build_model
>>> model = build_model(ModelConfig(arch="digits", code_dim=3, model_channels=8), "image", (1, 8, 8)).eval()
>>> res = edit(model, torch.zeros(1, 1, 8, 8), task="inpaint-box", steps=2)
>>> float(res.kept_error.max()) < 1e-6
True

Modules: :mod:`~qac.edit.operators` (A and A⁻¹), :mod:`~qac.edit.masks` (Ω), :mod:`~qac.edit.tasks`
(the task registry and the projections), :mod:`~qac.edit.algorithm` (Algorithm 2),
:mod:`~qac.edit.metrics` (PSNR, SSIM) and :mod:`~qac.edit.io` (reading inputs, writing results).
"""

from qac.edit.algorithm import CODE_MODES, EditResult, edit, edit_sigmas
from qac.edit.masks import box_mask, half_mask, png_mask, random_mask
from qac.edit.operators import BT601, AvgPool, Compose, Identity, Luminance
from qac.edit.tasks import PROJECTIONS, TASKS, Degradation, MaskOptions, make_degradation

__all__ = [
    "BT601",
    "CODE_MODES",
    "PROJECTIONS",
    "TASKS",
    "AvgPool",
    "Compose",
    "Degradation",
    "EditResult",
    "Identity",
    "Luminance",
    "MaskOptions",
    "box_mask",
    "edit",
    "edit_sigmas",
    "half_mask",
    "make_degradation",
    "png_mask",
    "random_mask",
]
