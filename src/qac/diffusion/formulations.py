"""Diffusion formulations as preconditioning rules (docs/design.md §1).

Every formulation turns a raw backbone F into the denoiser

    D(x, sigma) = c_skip(sigma) * x + c_out(sigma) * F(c_in(sigma) * x; c_noise(sigma))

in EDM sigma-space (x_sigma = x0 + sigma * n), and defines how training draws sigma and weights the
loss lambda(sigma) * ||D(x0 + sigma n, sigma) - x0||^2. All four satisfy lambda * c_out^2 = 1, i.e. the
effective target of F has unit weight.

A new formulation never touches a backbone: add a subclass and register it in :data:`FORMULATIONS`.

>>> import torch
>>> f = get_formulation("edm")
>>> float(f.c_skip(torch.tensor(0.5)))
0.5
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from qac.errors import QACError


@dataclass(frozen=True)
class Formulation:
    """Base class: the four preconditioning coefficients, the training sigma law and lambda(sigma).

    All methods take sigma as a tensor (any shape) and return a tensor of the same shape.
    """

    name: str = "base"

    def c_skip(self, sigma: Tensor) -> Tensor:
        """c_skip(sigma), the weight of the noisy input x in D (Karras et al. 2022, Table 1)."""
        raise NotImplementedError

    def c_out(self, sigma: Tensor) -> Tensor:
        """c_out(sigma), the scale of the backbone's output F in D (Karras et al. 2022, Table 1)."""
        raise NotImplementedError

    def c_in(self, sigma: Tensor) -> Tensor:
        """c_in(sigma), the scale applied to x before it enters the backbone (Karras et al. 2022, Table 1)."""
        raise NotImplementedError

    def c_noise(self, sigma: Tensor) -> Tensor:
        """c_noise(sigma), the noise label the backbone's noise embedding reads (Karras et al. 2022, Table 1)."""
        raise NotImplementedError

    def loss_weight(self, sigma: Tensor) -> Tensor:
        """lambda(sigma), the loss weight; lambda * c_out^2 = 1 for every formulation here."""
        return 1.0 / self.c_out(sigma) ** 2

    def sample_sigma(self, n: int, generator: torch.Generator, device: torch.device) -> Tensor:
        """Draw n training noise levels sigma ~ p_sigma (float32, shape [n]) from ``generator`` (on CPU)."""
        raise NotImplementedError


@dataclass(frozen=True)
class EDM(Formulation):
    """EDM (Karras et al. 2022): ln sigma ~ N(P_mean, P_std^2), lambda = (sigma^2+sd^2)/(sigma sd)^2.

    c_skip = sd^2/(sigma^2+sd^2), c_out = sigma sd/sqrt(sigma^2+sd^2), c_in = 1/sqrt(sigma^2+sd^2),
    c_noise = ln(sigma)/4.
    """

    name: str = "edm"
    sigma_data: float = 0.5
    p_mean: float = -1.2
    p_std: float = 1.2

    def c_skip(self, sigma: Tensor) -> Tensor:
        """EDM: sigma_data^2 / (sigma^2 + sigma_data^2) (Karras et al. 2022, Table 1; docs/design.md §1)."""
        sd2 = self.sigma_data**2
        return sd2 / (sigma**2 + sd2)

    def c_out(self, sigma: Tensor) -> Tensor:
        """EDM: sigma sigma_data / sqrt(sigma^2 + sigma_data^2), the std of x0 - c_skip x (F's target gets unit std)."""
        return sigma * self.sigma_data / (sigma**2 + self.sigma_data**2).sqrt()

    def c_in(self, sigma: Tensor) -> Tensor:
        """EDM: 1 / sqrt(sigma^2 + sigma_data^2), so that c_in x has unit variance for data of std sigma_data."""
        return 1.0 / (sigma**2 + self.sigma_data**2).sqrt()

    def c_noise(self, sigma: Tensor) -> Tensor:
        """EDM: ln(sigma) / 4."""
        return sigma.log() / 4

    def loss_weight(self, sigma: Tensor) -> Tensor:
        """EDM: (sigma^2 + sigma_data^2) / (sigma sigma_data)^2, written out (equal to the base's 1 / c_out^2)."""
        return (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2

    def sample_sigma(self, n: int, generator: torch.Generator, device: torch.device) -> Tensor:
        """EDM: ln sigma ~ N(p_mean, p_std^2), by default N(-1.2, 1.2^2); float32 [n] from CPU, moved to ``device``."""
        z = torch.randn(n, generator=generator)
        return (z * self.p_std + self.p_mean).exp().to(device)


@dataclass(frozen=True)
class VP(Formulation):
    """Variance preserving (Song et al. 2021) in EDM's parametrisation.

    sigma(t) = sqrt(exp(beta_d t^2/2 + beta_min t) - 1), t ~ U(eps_t, 1); c_skip = 1, c_out = -sigma,
    c_in = 1/sqrt(sigma^2+1), c_noise = (M-1) t(sigma); lambda = 1/sigma^2.
    """

    name: str = "vp"
    beta_d: float = 19.9
    beta_min: float = 0.1
    eps_t: float = 1e-5
    m: int = 1000

    def sigma_of_t(self, t: Tensor) -> Tensor:
        """VP noise level sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1) at VP time t in [0, 1]
        (Karras et al. 2022, Table 1); sigma(1) is about 152 with the default betas.
        """
        return (torch.exp(0.5 * self.beta_d * t**2 + self.beta_min * t) - 1).sqrt()

    def t_of_sigma(self, sigma: Tensor) -> Tensor:
        """VP time of a noise level, the inverse of :meth:`sigma_of_t`:
        t(sigma) = (sqrt(beta_min^2 + 2 beta_d ln(1 + sigma^2)) - beta_min) / beta_d.
        """
        return ((self.beta_min**2 + 2 * self.beta_d * torch.log1p(sigma**2)).sqrt() - self.beta_min) / self.beta_d

    def c_skip(self, sigma: Tensor) -> Tensor:
        """VP: 1."""
        return torch.ones_like(sigma)

    def c_out(self, sigma: Tensor) -> Tensor:
        """VP: -sigma, so D = x - sigma F and F predicts the noise n (epsilon-prediction, as in DDPM)."""
        return -sigma

    def c_in(self, sigma: Tensor) -> Tensor:
        """VP: 1 / sqrt(sigma^2 + 1), so the backbone sees the VP state sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) n."""
        return 1.0 / (sigma**2 + 1).sqrt()

    def c_noise(self, sigma: Tensor) -> Tensor:
        """VP: (M - 1) t(sigma) with M = ``m`` = 1000, DDPM's discrete-time label."""
        return (self.m - 1) * self.t_of_sigma(sigma)

    def sample_sigma(self, n: int, generator: torch.Generator, device: torch.device) -> Tensor:
        """VP: t ~ U(eps_t, 1), sigma = sigma(t); float32 [n], drawn on CPU, moved to ``device``."""
        u = torch.rand(n, generator=generator)
        t = 1 + u * (self.eps_t - 1)
        return self.sigma_of_t(t).to(device)


@dataclass(frozen=True)
class VE(Formulation):
    """Variance exploding: sigma = sigma_min (sigma_max/sigma_min)^u, u ~ U(0,1); c_skip = 1, c_out = sigma,
    c_in = 1, c_noise = ln(sigma/2); lambda = 1/sigma^2.
    """

    name: str = "ve"
    sigma_min: float = 0.02
    sigma_max: float = 100.0

    def c_skip(self, sigma: Tensor) -> Tensor:
        """VE: 1."""
        return torch.ones_like(sigma)

    def c_out(self, sigma: Tensor) -> Tensor:
        """VE: sigma, so D = x + sigma F and F learns -n (sigma times the score)."""
        return sigma

    def c_in(self, sigma: Tensor) -> Tensor:
        """VE: 1 (the backbone sees x unscaled)."""
        return torch.ones_like(sigma)

    def c_noise(self, sigma: Tensor) -> Tensor:
        """VE: ln(sigma / 2)."""
        return (0.5 * sigma).log()

    def sample_sigma(self, n: int, generator: torch.Generator, device: torch.device) -> Tensor:
        """VE: log-uniform sigma = sigma_min (sigma_max / sigma_min)^u, u ~ U(0, 1) (0.02 to 100 by default);
        float32 [n], drawn on CPU, moved to ``device``.
        """
        u = torch.rand(n, generator=generator)
        return (self.sigma_min * (self.sigma_max / self.sigma_min) ** u).to(device)


@dataclass(frozen=True)
class RF(Formulation):
    """Rectified flow trained as v-prediction, exposed to samplers as an EDM denoiser (docs/design.md §1).

    Training: x_t = (1-t) x0 + t n, loss ||v - (n - x0)||^2, t ~ U(eps, 1-eps) (or logit-normal).
    With sigma = t/(1-t) we have x_sigma = x_t/(1-t) = x0 + sigma n and D = x_t - t v, hence
    c_in = c_skip = 1/(1+sigma), c_out = -t = -sigma/(1+sigma), c_noise = (M-1) t, and
    ||D - x0||^2 = t^2 ||v - (n - x0)||^2, so lambda = 1/t^2 = 1/c_out^2 reproduces the v-loss exactly.
    """

    name: str = "rf"
    eps: float = 1e-4
    logit_normal: bool = False
    logit_mean: float = 0.0
    logit_std: float = 1.0
    m: int = 1000

    @staticmethod
    def t_of_sigma(sigma: Tensor) -> Tensor:
        """RF time of a noise level: t = sigma / (1 + sigma), the inverse of sigma = t / (1 - t)."""
        return sigma / (1 + sigma)

    def c_skip(self, sigma: Tensor) -> Tensor:
        """RF: 1 / (1 + sigma) = 1 - t, so the skip term c_skip x_sigma is x_t = (1 - t) x0 + t n."""
        return 1.0 / (1 + sigma)

    def c_out(self, sigma: Tensor) -> Tensor:
        """RF: -t = -sigma / (1 + sigma), so D = x_t - t F with F the velocity v."""
        return -self.t_of_sigma(sigma)

    def c_in(self, sigma: Tensor) -> Tensor:
        """RF: 1 / (1 + sigma) = 1 - t, so the backbone sees x_t = (1 - t) x0 + t n."""
        return 1.0 / (1 + sigma)

    def c_noise(self, sigma: Tensor) -> Tensor:
        """RF: (M - 1) t(sigma) with M = ``m`` = 1000."""
        return (self.m - 1) * self.t_of_sigma(sigma)

    def c_noise_of_t(self, t: Tensor) -> Tensor:
        """c_noise as a function of the RF time itself, finite at t = 1 where sigma = inf."""
        return (self.m - 1) * t

    def sample_sigma(self, n: int, generator: torch.Generator, device: torch.device) -> Tensor:
        """RF: t ~ U(0, 1), or logit-normal (``logit_mean``, ``logit_std``) when ``logit_normal``, clamped to
        [eps, 1 - eps] and returned as sigma = t / (1 - t); float32 [n], drawn on CPU, moved to ``device``.
        """
        if self.logit_normal:
            t = torch.sigmoid(torch.randn(n, generator=generator) * self.logit_std + self.logit_mean)
        else:
            t = torch.rand(n, generator=generator)
        t = t.clamp(self.eps, 1 - self.eps)
        return (t / (1 - t)).to(device)


FORMULATIONS: dict[str, Formulation] = {f.name: f for f in (EDM(), VP(), VE(), RF())}


def get_formulation(name: str) -> Formulation:
    """Look up a formulation by name (``edm``, ``vp``, ``ve``, ``rf``)."""
    try:
        return FORMULATIONS[name]
    except KeyError:
        raise QACError(f"unknown formulation {name!r}; choose one of {', '.join(FORMULATIONS)}") from None


def default_sigma_range(formulation: Formulation) -> tuple[float, float]:
    """(sigma_min, sigma_max) for sampling: EDM's 0.002/80 for every formulation (docs/design.md §0)."""
    del formulation
    return 0.002, 80.0


