"""One-step solvers: Euler (= DDIM), Heun (EDM Algorithm 1) and DPM-Solver-2 (reference §2.3).

Each is ``fn(denoise, x, sigmas, *, callback=None, afs=False) -> x`` with ``x`` the state at
``sigmas[0]`` (already scaled by sigma_max) and ``sigmas`` a strictly decreasing 1-d tensor.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from qac.errors import OptionError
from qac.sampling.solvers._common import Callback, Denoise, as_floats, call, first_denoised, report


def euler(denoise: Denoise, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None,
          afs: bool = False) -> Tensor:
    """Euler on the PF-ODE, ``x_{i+1} = x_i + (sigma_{i+1} - sigma_i) d_i`` (= DDIM = DPM-Solver-1).

    NFE = steps - [afs].

    >>> import torch
    >>> euler(lambda x, s: torch.zeros_like(x), torch.ones(1, 2) * 80, torch.tensor([80., 1.])).tolist()
    [[1.0, 1.0]]
    """
    s = as_floats(sigmas)
    for i in range(len(s) - 1):
        denoised = first_denoised(denoise, x, sigmas[i], s[i], afs and i == 0)
        report(callback, i, s[i], s[i + 1], x, denoised)
        # sigma-form of DDIM: exact for a constant denoiser and well-defined when sigma_{i+1} = 0
        x = torch.lerp(denoised, x, s[i + 1] / s[i])  # D + (s'/s)(x - D), one fused op
    return x


def heun(denoise: Denoise, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None,
         afs: bool = False) -> Tensor:
    """EDM's 2nd-order Heun: Euler predictor, trapezoidal corrector ``x_i + h (d_i + d'_{i+1}) / 2``.

    The corrector runs on every step whose target sigma is > 0; a final step to sigma = 0 is plain
    Euler (EDM Algorithm 1). NFE = 2 * steps - [afs] - [last sigma == 0].
    """
    s = as_floats(sigmas)
    for i in range(len(s) - 1):
        denoised = first_denoised(denoise, x, sigmas[i], s[i], afs and i == 0)
        report(callback, i, s[i], s[i + 1], x, denoised)
        x = heun_step(denoise, x, denoised, s[i], s[i + 1], sigmas[i + 1])
    return x


def heun_step(denoise: Denoise, x: Tensor, denoised: Tensor, s_from: float, s_to: float,
              sigma_to: Tensor) -> Tensor:
    """One EDM Heun step from ``s_from`` (where ``denoised = D(x)``) to ``s_to``: Euler predictor, then the
    trapezoidal corrector ``x + h (d + d') / 2`` unless ``s_to == 0`` (plain Euler there)."""
    h = s_to - s_from
    e = x - denoised  # = s_from * d; 1/sigma folded into the axpy weights (fewer passes over x)
    x_pred = torch.add(x, e, alpha=h / s_from)
    if s_to == 0:
        return x_pred
    e_next = x_pred - call(denoise, x_pred, sigma_to)
    return torch.add(x, e, alpha=0.5 * h / s_from).add_(e_next, alpha=0.5 * h / s_to)


def dpm2(denoise: Denoise, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None,
         afs: bool = False, r: float = 0.5) -> Tensor:
    """DPM-Solver-2 in sigma-coordinates, geometric intermediate point ``s = sigma_{i+1}^r sigma_i^(1-r)``.

    ``x_s = x_i + (s - sigma_i) d_i``; ``x_{i+1} = x_i + h [d_s / (2r) + (1 - 1/(2r)) d_i]`` (for r = 1/2
    the lambda-midpoint rule ``x_i + h d_s``). A step to sigma = 0 is Euler.
    NFE = 2 * steps - [afs] - [last sigma == 0].
    """
    if not 0 < r <= 1:
        raise OptionError(f"dpm2 needs 0 < r <= 1, got {r}")
    s = as_floats(sigmas)
    w_mid = 1.0 / (2.0 * r)
    for i in range(len(s) - 1):
        denoised = first_denoised(denoise, x, sigmas[i], s[i], afs and i == 0)
        report(callback, i, s[i], s[i + 1], x, denoised)
        e = x - denoised  # = sigma_i d_i
        h = s[i + 1] - s[i]
        if s[i + 1] == 0:
            x = torch.add(x, e, alpha=h / s[i])
            continue
        s_mid = math.exp(r * math.log(s[i + 1]) + (1 - r) * math.log(s[i]))
        x_mid = torch.add(x, e, alpha=(s_mid - s[i]) / s[i])
        e_mid = x_mid - call(denoise, x_mid, sigmas.new_tensor(s_mid))
        x_new = torch.add(x, e_mid, alpha=h * w_mid / s_mid)
        if w_mid != 1.0:
            x_new.add_(e, alpha=h * (1.0 - w_mid) / s[i])
        x = x_new
    return x
