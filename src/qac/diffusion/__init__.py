"""Diffusion formulations (edm, vp, ve, rf) as preconditioning wrappers plus the denoising loss."""

from qac.diffusion.denoiser import Denoiser, denoising_loss
from qac.diffusion.formulations import (
    EDM,
    FORMULATIONS,
    RF,
    VE,
    VP,
    Formulation,
    default_sigma_range,
    get_formulation,
)

__all__ = [
    "EDM", "FORMULATIONS", "RF", "VE", "VP", "Denoiser", "Formulation", "default_sigma_range",
    "denoising_loss", "get_formulation",
]
