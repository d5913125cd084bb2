"""Curvature (straightness) of ODE trajectories, as in RNE (docs/design.md §5; docs/design.md §5).

Liu et al.'s straightness S = ∫₀¹ E‖(Z₁ − Z₀) − dZ_s/ds‖² ds, discretised on the sampler's own grid as
RNE does (``utils.straightness``): with s the time rescaled to [0, 1] (s = (t − t₀)/(t_K − t₀)),

    Curv = Σ_k (Δs_k) · mean_{batch, dims} ‖ (x_k − x_{k−1}) / Δs_k − (x_K − x_0) ‖²,

i.e. the finite-difference velocity of each step against the straight chord, **averaged per dimension**
(not summed), weighted by step length. On RNE's uniform grid Δs_k = 1/K and this is exactly RNE's
``mean_k mean((v̂_k − D)²)``. Like RNE's number, it depends on the grid: report K with it.

Which time variable: the value is invariant to affine changes of time (t ↦ a·t + b, including reversal)
but not to nonlinear ones (a straight line traversed at varying speed has S > 0). QAC/RNE measure it in
rectified-flow time t ∈ [0, 1]; :func:`sigma_to_rf` converts EDM σ-space trajectories with

    t = σ / (1 + σ),     x_t = x_σ / (1 + σ),

which maps x_σ = x₀ + σ·n onto x_t = (1 − t)·x₀ + t·n (straight lines stay straight; σ = ∞ ↦ t = 1).
"""

from __future__ import annotations

import torch

from qac.errors import QACError


def sigma_to_rf(traj: torch.Tensor, sigmas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Map an EDM σ-space trajectory ``[K+1, B, ...]`` with ``sigmas [K+1]`` to RF time.

    Returns ``(traj_t, t)`` with t = σ/(1+σ) and x_t = x_σ/(1+σ) (float64).

    >>> x, t = sigma_to_rf(torch.ones(2, 1, 1), torch.tensor([1.0, 0.0]))
    >>> t.tolist(), x.flatten().tolist()
    ([0.5, 0.0], [0.5, 1.0])
    """
    sig = torch.as_tensor(sigmas, dtype=torch.float64, device=traj.device)
    if sig.ndim != 1 or sig.shape[0] != traj.shape[0] or bool((sig < 0).any()):
        raise QACError(f"need non-negative sigmas [K+1] matching the trajectory, got {tuple(sig.shape)}")
    scale = (1.0 / (1.0 + sig)).reshape(-1, *([1] * (traj.ndim - 1)))
    return traj.double() * scale, sig / (1.0 + sig)


def curvature(traj: torch.Tensor, times: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """RNE curvature of trajectories ``traj [K+1, B, ...]`` sampled at ``times [K+1]`` (module docstring).

    ``times`` is the variable the trajectory is straight in (RF time t for QAC/RNE numbers; use
    :func:`curvature_sigma` for EDM σ-space trajectories). ``reduction="none"`` gives one value per
    sample ``[B]``; ``"mean"`` a 0-d tensor. Exactly 0 for x(t) = a + t·b.

    >>> t = torch.linspace(0, 1, 3)
    >>> traj = torch.tensor([[[0.0, 0.0]], [[1.0, 1.0]], [[2.0, 0.0]]])
    >>> float(curvature(traj, t))
    2.0
    """
    if traj.ndim < 2 or traj.shape[0] < 2:
        raise QACError(f"need a trajectory [K+1 >= 2, B, ...], got {tuple(traj.shape)}")
    t = torch.as_tensor(times, dtype=torch.float64, device=traj.device)
    if t.shape != (traj.shape[0],):
        raise QACError(f"times {tuple(t.shape)} do not match trajectory length {traj.shape[0]}")
    x = traj.double().flatten(2)  # [K+1, B, F]
    total = t[-1] - t[0]
    dt = (t[1:] - t[:-1]) / total  # Δs_k, positive, sums to 1
    if not bool((dt > 0).all()):
        raise QACError("times must be strictly monotone")
    chord = x[-1] - x[0]  # [B, F]
    vel = (x[1:] - x[:-1]) / dt[:, None, None]  # [K, B, F]
    per_step = ((vel - chord) ** 2).mean(dim=2)  # [K, B]
    per_sample = (dt[:, None] * per_step).sum(dim=0)  # [B]
    if reduction == "none":
        return per_sample
    if reduction == "mean":
        return per_sample.mean()
    raise QACError(f"unknown reduction {reduction!r} (use 'mean' or 'none')")


def curvature_sigma(traj: torch.Tensor, sigmas: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Curvature of an EDM σ-space trajectory, measured in RF time (via :func:`sigma_to_rf`).

    >>> sig = torch.tensor([80.0, 10.0, 1.0, 0.0])
    >>> traj = 0.5 + sig[:, None, None] * torch.ones(1, 2, 3)  # x0 + sigma * n: straight
    >>> float(curvature_sigma(traj, sig)) < 1e-20
    True
    """
    x_t, t = sigma_to_rf(traj, sigmas)
    return curvature(x_t, t, reduction)
