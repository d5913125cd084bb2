"""The conditions a model can be trained with (``--cond``), as a registry (docs/design.md §3, §7).

* ``none``    baseline: no encoder, independent noise.
* ``qac``     paper §3.2: FSQ code of the clean item, sampled at generation from code weights (§3.3).
* ``rne``     Lee et al.'s reparameterized noise encoder (paper §4.2 / Tab. 1, 5): the noise of a training
  pair is z ~ q(z | x0) = N(mu, diag exp(logvar)), with a beta-weighted per-dimension KL to N(0, I);
  generation draws the noise from N(0, I).
* ``qac+rne`` paper §4.2: both, on one encoder backbone with two heads.
* ``vae``     paper §4.1 / Tab. 3's continuous row: a d-vector code c ~ q(c | x0) = N(mu, diag exp(logvar))
  with a beta-weighted KL to N(0, I), fed through the same code embedding; generation draws c ~ N(0, I).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["CONDITIONS", "Condition", "gaussian_kl", "reparameterize"]


@dataclass(frozen=True)
class Condition:
    """What a ``--cond`` builds and trains: encoder heads, whether it has a codebook, its default KL weight."""

    name: str
    heads: tuple[str, ...]
    default_beta: float | None = None  # None: no KL term

    @property
    def codebook(self) -> bool:
        """A discrete QAC code with sampling weights (paper §3.3)."""
        return "code" in self.heads

    @property
    def noise_encoder(self) -> bool:
        """The training noise comes from q(z | x0) (RNE)."""
        return "noise" in self.heads

    @property
    def continuous_code(self) -> bool:
        """A Gaussian d-vector code (the VAE condition)."""
        return "latent" in self.heads

    @property
    def code_input(self) -> bool:
        """The denoiser takes a d-vector code through its code embedding."""
        return self.codebook or self.continuous_code


#: RNE's CIFAR-10 setting (``--weight_prior 20``), used by the paper's Tab. 1 (docs/design.md §7).
RNE_BETA = 20.0
#: The VAE condition's KL weight relative to the summed denoising loss: the best of {0.01, 0.1, 1, 10} on the
#: 2-D toys (docs/results/vae_beta.md, docs/design.md §7); 1 and 10 collapse the posterior on moons.
VAE_BETA = 0.1

CONDITIONS: dict[str, Condition] = {c.name: c for c in (
    Condition("none", ()),
    Condition("qac", ("code",)),
    Condition("rne", ("noise",), RNE_BETA),
    Condition("qac+rne", ("code", "noise"), RNE_BETA),
    Condition("vae", ("latent",), VAE_BETA),
)}


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """Per-element KL(N(mu, exp(logvar)) || N(0, 1)) = (mu^2 + exp(logvar) - 1 - logvar) / 2 (RNE ``get_kl``;
    computed with ``expm1`` so that it is >= 0 in floating point near logvar = 0).

    >>> gaussian_kl(torch.zeros(2), torch.zeros(2)).tolist()
    [0.0, 0.0]
    """
    return 0.5 * (mu.square() + (torch.expm1(logvar) - logvar))


def reparameterize(mu: Tensor, logvar: Tensor, eps: Tensor) -> Tensor:
    """z = mu + exp(logvar / 2) * eps (the reparameterization trick; eps ~ N(0, I) drawn by the caller).

    >>> reparameterize(torch.ones(1), torch.zeros(1), torch.full((1,), 2.0)).tolist()
    [3.0]
    """
    return mu + (0.5 * logvar).exp() * eps
