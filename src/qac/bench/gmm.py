"""An exact test bench for samplers: a Gaussian mixture with closed-form denoisers (float64).

Data ``x0 ~ sum_k w_k N(mu_k, diag(v_k))`` in R^D. Under ``x_sigma = x0 + sigma n`` each component stays
Gaussian, ``x_sigma | k ~ N(mu_k, diag(v_k + sigma^2))``, so

- the **conditional denoiser** is linear:
  ``E[x0 | x_sigma, k] = mu_k + v_k / (v_k + sigma^2) (x_sigma - mu_k)``
  (the exact analogue of an adaptive condition that identifies the mode: the QAC paper's claim that
  conditions straighten trajectories can be checked without any training);
- the **denoiser** is ``E[x0 | x_sigma] = sum_k r_k(x_sigma) E[x0 | x_sigma, k]`` with responsibilities
  ``r_k proportional to w_k N(x_sigma; mu_k, v_k + sigma^2)``;
- the conditional PF-ODE ``dx/dsigma = (x - D_k)/sigma = sigma (x - mu_k) / (v_k + sigma^2)`` has the closed
  form ``x(sigma) = mu_k + (x(sigma_T) - mu_k) sqrt((v_k + sigma^2) / (v_k + sigma_T^2))`` (a straight line
  in x-space for isotropic components).

The unconditional ODE has no closed form; :func:`reference_solution` integrates it with the adaptive
Dormand–Prince solver at tight tolerance.

>>> import torch
>>> gmm = bench_mixture(dim=2, seed=0)
>>> x0, k = gmm.sample(5, generator=torch.Generator().manual_seed(0))
>>> gmm.denoise(x0 + 0.0, 1e-9).sub(x0).abs().max().item() < 1e-6  # D(x; sigma -> 0) -> x
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from qac.errors import QACError
from qac.sampling.solvers._common import Denoise
from qac.sampling.solvers.adaptive import rk45

_F64 = torch.float64


def _sigma_like(sigma: float | Tensor, x: Tensor) -> Tensor:
    """Sigma as a float64 tensor broadcastable against [B, K, D] (scalar or one per row)."""
    sig = torch.as_tensor(sigma, dtype=_F64, device=x.device)
    if sig.dim() == 0:
        return sig
    return sig.reshape(-1, 1, 1)


@dataclass(frozen=True)
class GaussianMixture:
    """A diagonal Gaussian mixture: ``weights`` [K], ``means`` [K, D], ``variances`` [K, D] (float64).

    Build with :meth:`create`, which accepts isotropic variances ([K]) and checks shapes.
    """

    weights: Tensor
    means: Tensor
    variances: Tensor

    @classmethod
    def create(cls, weights: Sequence[float] | Tensor, means: Sequence[Sequence[float]] | Tensor,
               variances: Sequence[float] | Sequence[Sequence[float]] | Tensor) -> GaussianMixture:
        """Validated mixture. ``variances`` is [K] (isotropic) or [K, D] (diagonal); weights are normalised.

        >>> GaussianMixture.create([1, 1], [[-1.0], [1.0]], [0.1, 0.2]).weights.tolist()
        [0.5, 0.5]
        """
        w = torch.as_tensor(weights, dtype=_F64).flatten()
        mu = torch.as_tensor(means, dtype=_F64)
        var = torch.as_tensor(variances, dtype=_F64)
        if mu.dim() != 2 or w.numel() != mu.shape[0]:
            raise QACError(f"means must be [K, D] with K = len(weights); got {tuple(mu.shape)}, "
                           f"K={w.numel()}")
        if var.dim() == 1:
            var = var[:, None].expand(mu.shape).clone()
        if var.shape != mu.shape:
            raise QACError(f"variances must be [K] or [K, D] = {tuple(mu.shape)}, got {tuple(var.shape)}")
        if (w <= 0).any() or (var <= 0).any():
            raise QACError("mixture weights and variances must be positive")
        return cls(w / w.sum(), mu, var)

    @property
    def dim(self) -> int:
        """D, the data dimension."""
        return self.means.shape[1]

    @property
    def num_components(self) -> int:
        """K, the number of mixture components."""
        return self.means.shape[0]

    def _to(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return (self.weights.to(x.device), self.means.to(x.device), self.variances.to(x.device))

    def responsibilities(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """Posterior component probabilities ``p(k | x_sigma)``, [B, K]."""
        w, mu, var = self._to(x)
        tot = var + _sigma_like(sigma, x) ** 2  # [K, D] or [B, K, D]
        diff = x.to(_F64)[:, None, :] - mu
        logp = -0.5 * (diff.pow(2) / tot + torch.log(2 * math.pi * tot)).sum(-1) + torch.log(w)
        return torch.softmax(logp, dim=-1)

    def _component_means(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        _, mu, var = self._to(x)
        gain = var / (var + _sigma_like(sigma, x) ** 2)
        return mu + gain * (x.to(_F64)[:, None, :] - mu)  # [B, K, D]

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """Exact ``E[x0 | x_sigma = x]`` for x [B, D] and sigma (float, 0-d or [B]); same dtype as x."""
        r = self.responsibilities(x, sigma)
        return (r[:, :, None] * self._component_means(x, sigma)).sum(1).to(x.dtype)

    def denoise_component(self, x: Tensor, sigma: float | Tensor, component: Tensor) -> Tensor:
        """Exact ``E[x0 | x_sigma = x, k = component]``; ``component`` is a LongTensor [B]."""
        _, mu, var = self._to(x)
        k = component.to(x.device).long()
        mu_k, var_k = mu[k], var[k]
        sig = torch.as_tensor(sigma, dtype=_F64, device=x.device)
        sig = sig if sig.dim() == 0 else sig.reshape(-1, 1)
        return (mu_k + var_k / (var_k + sig**2) * (x.to(_F64) - mu_k)).to(x.dtype)

    def conditional(self, component: Tensor) -> Denoise:
        """A denoise function with the component bound in a closure (how QAC codes reach solvers)."""
        return lambda x, sigma: self.denoise_component(x, sigma, component)

    def conditional_flow(self, x_start: Tensor, sigma_start: float, sigma: float,
                         component: Tensor) -> Tensor:
        """Closed-form solution of the conditional PF-ODE from ``(x_start, sigma_start)`` to ``sigma``."""
        _, mu, var = self._to(x_start)
        k = component.to(x_start.device).long()
        scale = torch.sqrt((var[k] + sigma**2) / (var[k] + sigma_start**2))
        return mu[k] + (x_start.to(_F64) - mu[k]) * scale

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` draws (float64 [n, D]) and their component indices (LongTensor [n])."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=_F64)
        return self.means[k] + self.variances[k].sqrt() * z, k

    def mean(self) -> Tensor:
        """Mixture mean [D]."""
        return (self.weights[:, None] * self.means).sum(0)

    def variance(self) -> Tensor:
        """Per-coordinate mixture variance [D] (diagonal of the covariance)."""
        second = (self.weights[:, None] * (self.variances + self.means**2)).sum(0)
        return second - self.mean() ** 2


def bench_mixture(dim: int = 2, num_components: int = 4, seed: int = 0) -> GaussianMixture:
    """The standard bench: ``num_components`` isotropic components with means ~ N(0, 1), std 0.15–0.35.

    Data scale ~1 like images in [-1, 1]; modes separated enough that the unconditional PF-ODE bends.
    """
    if dim < 1 or num_components < 1:
        raise QACError("dim and num_components must be >= 1")
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(num_components, dim, generator=gen, dtype=_F64)
    std = 0.15 + 0.2 * torch.rand(num_components, generator=gen, dtype=_F64)
    weights = 0.5 + torch.rand(num_components, generator=gen, dtype=_F64)
    return GaussianMixture.create(weights, means, std**2)


def reference_solution(denoise: Denoise, noise: Tensor, *, sigma_min: float = 0.002, sigma_max: float = 80.0,
                       sigmas: Tensor | None = None, rtol: float = 1e-10, atol: float = 1e-10) -> Tensor:
    """High-accuracy PF-ODE solution from ``sigma_max * noise`` (unit noise [B, D]) down to ``sigma_min``.

    Adaptive Dormand–Prince in ``ln sigma`` at ``rtol = atol = 1e-10`` (float64). With ``sigmas`` given,
    integrates along that grid instead (start at ``sigmas[0] * noise``) and returns the states at every grid
    point, [len(sigmas), B, D].
    """
    x = noise.to(_F64)
    if sigmas is None:
        grid = torch.tensor([sigma_max, sigma_min], dtype=_F64, device=x.device)
        return rk45(denoise, x * sigma_max, grid, rtol=rtol, atol=atol)
    grid = sigmas.to(dtype=_F64, device=x.device)
    states: list[Tensor] = []
    out = rk45(denoise, x * grid[0], grid, rtol=rtol, atol=atol,
               callback=lambda info: states.append(info["x"]))
    return torch.stack(states + [out])
