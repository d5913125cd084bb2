"""Shared pieces of every solver: the first evaluation (with AFS), thresholding, callback, noise.

Conventions (docs/design.md §4, docs/solvers.md): the state ``x`` lives in sigma-space,
``x_sigma = x0 + sigma * n``; the probability-flow ODE is ``dx/dsigma = d = (x - D(x; sigma)) / sigma``;
``lambda = -ln sigma``. Solvers never modify tensors in place, so a callback may keep references.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

Denoise = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[[dict[str, Any]], None]
Generator = torch.Generator | Sequence[torch.Generator] | None


def afs_denoised(x: Tensor, sigma: float) -> Tensor:
    """Analytical first step (AFS): the denoised estimate that replaces the first network call.

    The slope is ``d0 = x / sqrt(1 + sigma^2)`` (the data mean is ~0 at sigma_max, so D ~ 0), hence
    ``D = x - sigma * d0``. Saves one NFE.
    """
    return x * (1.0 - sigma / math.sqrt(1.0 + sigma * sigma))


def first_denoised(denoise: Denoise, x: Tensor, sigma: Tensor, sigma_f: float, afs: bool) -> Tensor:
    """``D(x; sigma)`` in the state dtype, or the AFS estimate when ``afs`` is set."""
    if afs:
        return afs_denoised(x, sigma_f)
    return denoise(x, sigma).to(x.dtype)


def call(denoise: Denoise, x: Tensor, sigma: Tensor) -> Tensor:
    """One network evaluation, cast back to the state dtype."""
    return denoise(x, sigma).to(x.dtype)


def threshold(denoised: Tensor, quantile: float | None) -> Tensor:
    """Dynamic thresholding (Imagen / DPM-Solver++) of a data prediction, per sample.

    ``s = max(quantile(|D|, q), 1)`` over each sample's entries; ``D <- clamp(D, -s, s) / s``. For images in
    [-1, 1] this is essentially a clamp. ``quantile=None`` (the default everywhere) leaves ``D`` unchanged.
    """
    if quantile is None:
        return denoised
    flat = denoised.reshape(denoised.shape[0], -1).abs()
    s = torch.quantile(flat, float(quantile), dim=1).clamp(min=1.0)
    s = s.reshape((-1,) + (1,) * (denoised.dim() - 1))
    return torch.maximum(torch.minimum(denoised, s), -s) / s


def combine(base: Tensor | None, coeffs: Sequence[float], terms: Sequence[Tensor]) -> Tensor:
    """``base + sum_j coeffs[j] terms[j]`` (no base when ``base`` is None) as a fresh tensor: one fused axpy per
    nonzero coefficient, in order, zero coefficients skipped (at least one must be nonzero)."""
    pairs = [(c, t) for c, t in zip(coeffs, terms) if c != 0.0]
    if not pairs:
        raise ValueError("combine needs a nonzero coefficient")
    (c0, t0), rest = pairs[0], pairs[1:]
    out = t0 * c0 if base is None else torch.add(base, t0, alpha=c0)
    return add_terms_(out, [c for c, _ in rest], [t for _, t in rest])


def add_terms_(out: Tensor, coeffs: Sequence[float], terms: Sequence[Tensor]) -> Tensor:
    """``out += sum_j coeffs[j] terms[j]`` in place, one fused axpy per nonzero coefficient, in order."""
    for c, t in zip(coeffs, terms):
        if c != 0.0:
            out.add_(t, alpha=c)
    return out


def report(callback: Callback | None, i: int, sigma: float, sigma_next: float, x: Tensor,
           denoised: Tensor) -> None:
    """Call ``callback`` with the state at the start of step ``i`` and the denoised value used there."""
    if callback is not None:
        callback({"i": i, "sigma": sigma, "sigma_next": sigma_next, "x": x, "denoised": denoised})


def randn_float32(x: Tensor, generator: Generator) -> Tensor:
    """Unit Gaussian noise shaped like ``x``, float32 on ``x``'s device (the draws of :func:`randn_like`).

    For fused updates: ``y.add_(noise, alpha=c)`` with a float64 ``y`` casts each float32 draw exactly, so it
    equals ``y + c * randn_like(x)`` without a separate cast pass.
    """
    if generator is None:
        return torch.randn(x.shape, device=x.device, dtype=torch.float32)
    if isinstance(generator, torch.Generator):
        return torch.randn(x.shape, generator=generator, device=generator.device).to(x.device)
    gens = list(generator)
    if len(gens) != x.shape[0]:
        raise ValueError(f"got {len(gens)} generators for a batch of {x.shape[0]}")
    return torch.stack([torch.randn(x.shape[1:], generator=g, device=g.device).to(x.device) for g in gens])


def randn_like(x: Tensor, generator: Generator) -> Tensor:
    """Unit Gaussian noise shaped like ``x``, in ``x``'s dtype.

    ``generator`` may be ``None`` (global RNG), one ``torch.Generator`` for the whole batch, or one
    generator per row (then row k depends only on generator k, whatever the batch size: docs/design.md §0).
    Noise is drawn in float32 on the generator's device and cast, as :func:`qac.util.per_seed_randn`.
    """
    return randn_float32(x, generator).to(x.dtype)


def as_floats(sigmas: Tensor) -> list[float]:
    """The sigma grid as Python floats (one host sync per call; coefficients are computed from it)."""
    return [float(s) for s in sigmas.detach().cpu().tolist()]


class CountingCall:
    """Wraps a network function (``denoise(x, sigma)`` or ``velocity(x, t)``) and counts its calls (the NFE)."""

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor]) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, x: Tensor, s: Tensor) -> Tensor:
        self.calls += 1
        return self.fn(x, s)


def listener(callback: Callback | None, trajectory: list[Tensor] | None) -> Callback | None:
    """The callback a solver gets: appends each step's state ``x`` to ``trajectory`` (when a list) and forwards
    to ``callback``; ``None`` when nothing listens (solvers may then skip forming states nobody sees)."""
    if callback is None and trajectory is None:
        return None

    def hook(info: dict[str, Any]) -> None:
        if trajectory is not None:
            trajectory.append(info["x"])
        if callback is not None:
            callback(info)

    return hook

