"""Per-t conditional flow-matching loss L_CFM(t) on held-out data (paper Eq. 12/17, docs/design.md §5).

Rectified-flow path with t = 0 data and t = 1 noise (the paper's convention):

    X_t = (1 − t)·x₀ + t·n,   Ẋ_t = n − x₀,   L_CFM(t) = E ‖Ẋ_t − v_θ(X_t, t, Y)‖²,

reported **per dimension** (the squared norm divided by the number of dimensions, RNE's
``F.mse_loss`` convention) unless ``per_dim=False``.

Velocity from an EDM denoiser D(x_σ, σ) ≈ E[x₀ | x_σ], x_σ = x₀ + σ·n. Since
(1 − t)·x_σ = (1 − t)·x₀ + t·n = X_t when σ = t/(1 − t):

    σ = t / (1 − t),   x_σ = X_t / (1 − t),   x̂₀ = D(x_σ, σ),   n̂ = (x_σ − x̂₀)/σ,
    v = n̂ − x̂₀ = (X_t − (1 − t)·x̂₀)/t − x̂₀ = (X_t − x̂₀) / t.

With the exact denoiser this is E[n − x₀ | X_t], so L_CFM(t) is then the irreducible
E Var(Ẋ_t | X_t); e.g. for x₀ ~ N(0, s²I) it is, per dimension,
(1 + s²) − (t − (1 − t)s²)² / ((1 − t)²s² + t²) (see :func:`gaussian_cfm_loss`).

The condition Y of QAC is computed from the clean point: ``denoise_fn(x_sigma, sigma, x0_batch)`` receives
the clean batch so it can encode it (c = E(x₀)) and bind the code; methods without conditions ignore it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

from qac.errors import QACError
from qac.util import state_dtype

#: denoise_fn(x_sigma [B, ...], sigma (0-d tensor), x0_batch [B, ...]) -> x0_hat [B, ...]
CondDenoiseFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
#: velocity_fn(X_t [B, ...], t (0-d tensor), x0_batch [B, ...]) -> v [B, ...]  (RF time, t=1 noise)
CondVelocityFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
#: coupling(x0_batch, n) -> x1: the noise end of each pair from an independent draw n ~ N(0, I)
#: (RNE: x1 = mu(x0) + exp(logvar(x0)/2) n); None means the independent coupling x1 = n.
Coupling = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def velocity_from_denoiser(denoise_fn: CondDenoiseFn) -> CondVelocityFn:
    """Wrap an EDM σ-space denoiser as an RF velocity: v(X_t, t) = (X_t − D(X_t/(1−t), t/(1−t)))/t.

    >>> v = velocity_from_denoiser(lambda x, s, x0: torch.zeros_like(x))
    >>> v(torch.ones(1, 2), torch.tensor(0.5), torch.zeros(1, 2)).tolist()
    [[2.0, 2.0]]
    """

    def velocity(x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        sigma = t / (1 - t)
        x0_hat = denoise_fn(x_t / (1 - t), sigma, x0)
        return (x_t - x0_hat.to(x_t.dtype)) / t

    return velocity


def _check_ts(ts: Sequence[float]) -> list[float]:
    ts = [float(t) for t in ts]
    if not ts or any(not 0.0 < t < 1.0 for t in ts):
        raise QACError(f"L_CFM times must lie strictly inside (0, 1), got {ts}")
    return ts


@torch.no_grad()
def velocity_cfm_loss_curve(velocity_fn: CondVelocityFn, x0: torch.Tensor, ts: Sequence[float], *,
                            generator: torch.Generator | None = None, batch_size: int = 512,
                            per_dim: bool = True, progress: bool = False,
                            coupling: Coupling | None = None) -> dict[float, float]:
    """L_CFM(t) for an RF velocity ``velocity_fn(X_t, t, x0_batch)`` on held-out data ``x0 [N, ...]``.

    One noise draw n per data point is shared by all t (lower variance when comparing t's). Arithmetic
    in float64 (float32 on MPS), noise drawn on the CPU from ``generator``. ``coupling`` maps (x0, n) to the
    pair's noise end x1 (the training coupling of a learned-coupling model; default x1 = n).

    >>> x0 = torch.zeros(16, 2)
    >>> exact = lambda x_t, t, xb: (x_t - (1 - t) * xb) / t - xb   # = n - x0 for delta data
    >>> velocity_cfm_loss_curve(exact, x0, [0.5])[0.5] < 1e-20
    True
    """
    ts = _check_ts(ts)
    if x0.ndim < 2 or x0.shape[0] < 1:
        raise QACError(f"need held-out data [N, ...], got {tuple(x0.shape)}")
    dtype = state_dtype(x0.device)
    sums = dict.fromkeys(ts, 0.0)
    count = 0
    starts = range(0, x0.shape[0], batch_size)
    for i in tqdm(starts, disable=not progress, desc="L_CFM"):
        xb = x0[i:i + batch_size].to(dtype)
        noise = torch.randn(xb.shape, generator=generator, dtype=torch.float32).to(xb.device, dtype)
        if coupling is not None:
            noise = coupling(xb, noise).to(dtype)
        target = noise - xb
        for t in ts:
            tt = torch.tensor(t, dtype=dtype, device=xb.device)
            x_t = (1 - tt) * xb + tt * noise
            err = (target - velocity_fn(x_t, tt, xb).to(dtype)).flatten(1).pow(2)
            per_item = err.mean(1) if per_dim else err.sum(1)
            sums[t] += float(per_item.sum())
        count += xb.shape[0]
    return {t: sums[t] / count for t in ts}


def cfm_loss_curve(denoise_fn: CondDenoiseFn, x0: torch.Tensor, ts: Sequence[float], *,
                   generator: torch.Generator | None = None, batch_size: int = 512, per_dim: bool = True,
                   progress: bool = False, coupling: Coupling | None = None) -> dict[float, float]:
    """L_CFM(t) (paper Eq. 12/17) of an EDM σ-space denoiser on held-out data ``x0 [N, ...]``.

    ``denoise_fn(x_sigma, sigma, x0_batch)`` gets x_σ (float64), σ = t/(1−t) as a 0-d tensor, and the clean
    batch (for QAC: bind the code E(x0_batch) inside). Conversion to the RF velocity as in the module
    docstring. ``coupling`` as in :func:`velocity_cfm_loss_curve`. Returns ``{t: loss}`` (per-dimension
    mean unless ``per_dim=False``).

    >>> s = 0.5   # data N(0, s^2 I); its exact denoiser is s^2/(s^2+sigma^2) x
    >>> exact = lambda x, sigma, xb: s**2 / (s**2 + sigma**2) * x
    >>> x0 = s * torch.randn(4000, 2, generator=torch.Generator().manual_seed(0))
    >>> mc = cfm_loss_curve(exact, x0, [0.3], generator=torch.Generator().manual_seed(1))[0.3]
    >>> abs(mc - gaussian_cfm_loss(s, 0.3)) < 0.05
    True
    """
    return velocity_cfm_loss_curve(velocity_from_denoiser(denoise_fn), x0, ts, generator=generator,
                                   batch_size=batch_size, per_dim=per_dim, progress=progress, coupling=coupling)


def gaussian_cfm_loss(s: float, t: float) -> float:
    """Exact per-dimension L_CFM(t) for data N(0, s²I) with the exact (Bayes) velocity.

    Per dimension U = n − x₀ and X = (1 − t)x₀ + t·n are jointly Gaussian with Var U = 1 + s²,
    Var X = (1 − t)²s² + t², Cov = t − (1 − t)s², so Var(U | X) = Var U − Cov²/Var X.

    >>> gaussian_cfm_loss(1.0, 0.5)
    2.0
    """
    var_x = (1 - t) ** 2 * s * s + t * t
    return (1 + s * s) - (t - (1 - t) * s * s) ** 2 / var_x
