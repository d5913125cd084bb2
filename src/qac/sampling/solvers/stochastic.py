"""Stochastic samplers: EDM's churn sampler (Algorithm 2) and Euler–Maruyama on the reverse VE SDE.

Noise comes from ``generator``: ``None`` (global RNG), one ``torch.Generator``, or one generator per
batch row (row k then depends only on generator k: docs/design.md §0 per-seed randomness).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from qac.sampling.solvers._common import (
    Callback,
    Denoise,
    Generator,
    as_floats,
    first_denoised,
    randn_float32,
    randn_like,
    report,
)
from qac.sampling.solvers.single_step import heun_step


def edm_sde(denoise: Denoise, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None,
            afs: bool = False, S_churn: float = 0.0, S_min: float = 0.0, S_max: float = math.inf,
            S_noise: float = 1.0, generator: Generator = None) -> Tensor:
    """EDM stochastic sampler (Karras et al. 2022, Algorithm 2).

    For ``S_min <= sigma_i <= S_max``: ``gamma = min(S_churn / steps, sqrt(2) - 1)``,
    ``sigma^ = sigma_i (1 + gamma)``,
    ``x^ = x_i + sqrt(sigma^2 - sigma_i^2) S_noise eps``; then one Heun step from ``sigma^`` to
    ``sigma_{i+1}`` (Euler when ``sigma_{i+1} = 0``). ``S_churn = 0`` is :func:`heun`.
    NFE = 2 * steps - [afs] - [last sigma == 0]. The callback's ``sigma`` is ``sigma_i`` (before churn).
    """
    s = as_floats(sigmas)
    steps = len(s) - 1
    gamma_max = min(S_churn / steps, math.sqrt(2.0) - 1.0) if steps else 0.0
    for i in range(steps):
        x_i = x
        gamma = gamma_max if S_min <= s[i] <= S_max else 0.0
        s_hat = s[i] * (1.0 + gamma)
        if gamma > 0:
            x = x + (math.sqrt(s_hat**2 - s[i] ** 2) * S_noise) * randn_like(x, generator)
        sig_hat = sigmas[i] if gamma == 0 else sigmas.new_tensor(s_hat)
        denoised = first_denoised(denoise, x, sig_hat, s_hat, afs and i == 0)
        report(callback, i, s[i], s[i + 1], x_i, denoised)
        x = heun_step(denoise, x, denoised, s_hat, s[i + 1], sigmas[i + 1])
    return x


def euler_maruyama(denoise: Denoise, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None,
                   afs: bool = False, generator: Generator = None) -> Tensor:
    """Euler–Maruyama on the reverse-time VE SDE ``dx = -2 sigma score dsigma + sqrt(2 sigma) dW``.

    With ``score = (D - x) / sigma^2`` and ``h = sigma_{i+1} - sigma_i < 0``:
    ``x_{i+1} = x_i + 2 h d_i + sqrt(2 sigma_i |h|) eps``. A step to sigma = 0 returns ``D`` (Tweedie).
    Weak order 1: it needs many steps. NFE = steps - [afs].
    """
    s = as_floats(sigmas)
    for i in range(len(s) - 1):
        denoised = first_denoised(denoise, x, sigmas[i], s[i], afs and i == 0)
        report(callback, i, s[i], s[i + 1], x, denoised)
        if s[i + 1] == 0:
            x = denoised
            continue
        h = s[i + 1] - s[i]
        noise = randn_float32(x, generator)  # cast inside the fused add below
        # x + (2h/s)(x - D) = lerp(D, x, 1 + 2h/s): two passes over the state with the noise
        x = torch.lerp(denoised, x, 1.0 + 2.0 * h / s[i]).add_(noise, alpha=math.sqrt(-2.0 * s[i] * h))
    return x
