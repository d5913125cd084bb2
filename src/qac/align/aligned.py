"""Aligned evaluation: the denoiser seen by a solver, with a learned noise level per network evaluation.

The timestep aligner (docs/design.md §8; Xia et al., "Towards More Accurate Diffusion Model Acceleration
with A Timestep Aligner") keeps the solver and its sigma grid and changes only what the network is
conditioned on. Evaluations are indexed ``k = 0..K-1`` in the order the solver makes them (K = NFE); the
k-th one has a nominal level ``sigma^(k)`` (whatever the solver passes) and a learned log-offset ``delta_k``:

    tau_k = clamp(sigma^(k) * exp(delta_k), lo_k, hi_k),
    lo_k = min(sigma_lo, sigma^(k)),  hi_k = max(sigma_hi, sigma^(k)),

with [sigma_lo, sigma_hi] the model's trained range (the nominal level itself is always allowed, so that
``delta = 0`` gives ``tau = sigma`` exactly). Two modes:

* ``full``:  D~_k(x) = D(x; tau_k)  (any denoiser, a black box);
* ``embed``: D~_k(x) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(tau_k))  (only the noise
  embedding moves; needs a network denoiser that accepts ``noise_sigma``).

Q-Sched-style scalars (Frumkin & Marculescu 2025): a multiplier ``m_k`` on the model's noise prediction
``eps = (x - D)/sigma`` and ``s_k`` on the state, applied before the solver turns them into its update:

    D~_k(x) <- s_k x - m_k (x - D~_k(x))      (x0 = s_k x - sigma m_k eps, Q-Sched's pre-conditioning),

computed as ``D~ + (s_k - 1) x + (1 - m_k)(x - D~)`` so that ``m = s = 1`` changes nothing. Everything
happens in this one wrapper around ``denoise(x, sigma)``: every solver calls it exactly once per network
evaluation, so no solver is forked, and ``delta = 0`` without scalars reproduces the unaligned sampler bit
for bit.

>>> import torch
>>> base = lambda x, sigma, noise_sigma=None: x / (1 + sigma ** 2)
>>> wrap = AlignedDenoise(base, torch.tensor([0.0, 0.5]), mode="full")
>>> x, s = torch.ones(1, 2, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64)
>>> bool((wrap(x, s) == base(x, s)).all()), wrap.calls  # delta_0 = 0: the plain evaluation
(True, 1)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, get_args

import torch
from torch import Tensor

from qac.errors import QACError

Mode = Literal["embed", "full"]
MODES: tuple[str, ...] = get_args(Mode)
#: ``fn(x, sigma, noise_sigma=None) -> x0_hat``: a denoiser whose noise embedding can be conditioned apart.
NoiseDenoise = Callable[..., Tensor]


def check_mode(mode: str) -> str:
    """``mode`` if it is ``embed`` or ``full``; QACError otherwise."""
    if mode not in MODES:
        raise QACError(f"alignment mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def aligned_level(sigma: Tensor, delta: Tensor, sigma_lo: float, sigma_hi: float) -> Tensor:
    """``tau = clamp(sigma * exp(delta), min(sigma_lo, sigma), max(sigma_hi, sigma))`` (docs/design.md §8).

    >>> float(aligned_level(torch.tensor(10.0), torch.tensor(math.log(20.0)), 0.002, 80.0))
    80.0
    """
    s = float(sigma)
    return (sigma * torch.exp(delta.to(sigma.dtype))).clamp(min(sigma_lo, s), max(sigma_hi, s))


def qsched_adjust(denoised: Tensor, x: Tensor, out_scale: Tensor, state_scale: Tensor) -> Tensor:
    """Q-Sched pre-conditioning on a data prediction: ``s x - m (x - D)``, written as
    ``D + (s - 1) x + (1 - m)(x - D)`` so that ``m = s = 1`` returns ``D`` unchanged.

    >>> d = qsched_adjust(torch.tensor([1.0]), torch.tensor([3.0]), torch.tensor(2.0), torch.tensor(1.0))
    >>> d.tolist()  # x - 2 (x - D) = 3 - 4
    [-1.0]
    """
    m, s = out_scale.to(x.dtype), state_scale.to(x.dtype)
    return denoised + (s - 1) * x + (1 - m) * (x - denoised)


class AlignedDenoise:
    """``denoise(x, sigma)`` for a solver: evaluation k goes to ``base`` at ``tau_k`` (see the module doc).

    ``delta`` [K] (may require grad), optional ``out_scale``/``state_scale`` [K] (Q-Sched multipliers);
    ``nominal`` [K], when given, is the sigma each evaluation was aligned at: a solver that asks for another
    level (another schedule, solver or NFE) is refused. Counts its calls; use a fresh one per sampling run.
    """

    def __init__(self, base: NoiseDenoise, delta: Tensor, *, mode: Mode = "full",
                 sigma_range: tuple[float, float] = (0.002, 80.0), out_scale: Tensor | None = None,
                 state_scale: Tensor | None = None, nominal: list[float] | None = None) -> None:
        self.base, self.delta, self.mode = base, delta, check_mode(mode)
        self.sigma_lo, self.sigma_hi = sigma_range
        self.out_scale, self.state_scale, self.nominal = out_scale, state_scale, nominal
        self.calls = 0

    @property
    def num_evals(self) -> int:
        """K, the number of network evaluations this wrapper holds offsets for (the NFE)."""
        return int(self.delta.numel())

    def evaluate(self, k: int, x: Tensor, sigma: Tensor) -> Tensor:
        """The aligned evaluation number ``k`` at the solver's ``(x, sigma)``."""
        if k >= self.num_evals:
            raise QACError(f"the aligner holds {self.num_evals} evaluations but the solver asked for more: "
                           "it was trained for another solver, NFE or AFS setting")
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if self.nominal is not None and not math.isclose(float(sigma), self.nominal[k], rel_tol=1e-6):
            raise QACError(f"evaluation {k} is at sigma {float(sigma):.6g} but the aligner was trained at "
                           f"{self.nominal[k]:.6g}: another schedule, solver or NFE")
        tau = aligned_level(sigma, self.delta[k], self.sigma_lo, self.sigma_hi)
        out = self.base(x, tau) if self.mode == "full" else self.base(x, sigma, tau)
        if self.out_scale is not None or self.state_scale is not None:
            one = torch.ones((), dtype=x.dtype, device=x.device)
            m = self.out_scale[k] if self.out_scale is not None else one
            s = self.state_scale[k] if self.state_scale is not None else one
            out = qsched_adjust(out.to(x.dtype), x, m, s)
        return out

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        """The solver-facing ``denoise(x, sigma)``: aligned evaluation number :attr:`calls`, which then counts up."""
        k = self.calls
        self.calls += 1
        return self.evaluate(k, x, sigma)
