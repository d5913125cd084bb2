"""The denoiser D(x, sigma, code) = c_skip x + c_out F(c_in x; c_noise, code) and the training loss."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from qac.diffusion.formulations import RF, Formulation
from qac.errors import QACError


class Denoiser(nn.Module):
    """Wraps a backbone F with a formulation's preconditioning (docs/design.md §1, EDM Eq. 7).

    ``forward(x, sigma, code=None)`` returns x0_hat in x's dtype. sigma is a scalar, a 0-d tensor or
    a [B] tensor. The backbone runs in float32 (or under autocast); the skip connection is computed in
    x's dtype, so float64 solver states keep their precision. ``noise_sigma`` (same forms as sigma)
    conditions only the noise embedding, ``c_noise(noise_sigma)``, while c_skip, c_out and c_in keep
    ``sigma``: the ``embed`` mode of the timestep aligner (docs/design.md §8). ``None`` means ``sigma``.

    >>> import torch
    >>> from qac.diffusion import get_formulation
    >>> class Zero(torch.nn.Module):
    ...     code_dim = 0
    ...     def forward(self, x, c_noise, code=None): return torch.zeros_like(x)
    >>> d = Denoiser(Zero(), get_formulation("edm"))
    >>> d(torch.ones(1, 2), 0.5).tolist()   # c_skip(0.5) = 0.5
    [[0.5, 0.5]]
    """

    def __init__(self, backbone: nn.Module, formulation: Formulation) -> None:
        super().__init__()
        self.backbone = backbone
        self.formulation = formulation

    def forward(self, x: Tensor, sigma: Tensor | float, code: Tensor | None = None, *,
                noise_sigma: Tensor | float | None = None, **kwargs) -> Tensor:
        """x0_hat = c_skip x + c_out F(c_in x; c_noise, code) (EDM Eq. 7; docs/design.md §1).

        ``x`` [B, ...] in any float dtype, ``sigma`` a scalar, 0-d or [B], ``code`` the backbone's code input
        [B, d] or None; returns [B, ...] in x's dtype. Other keywords (``augment_labels``) go to the backbone.
        """
        sigma = _per_row(sigma, x)
        f = self.formulation
        net_in = (f.c_in(sigma) * x).to(torch.float32)
        c_noise = f.c_noise(sigma if noise_sigma is None else _per_row(noise_sigma, x)).reshape(-1).to(torch.float32)
        if code is not None:
            code = code.to(torch.float32)
        out = self.backbone(net_in, c_noise, code, **kwargs)
        return f.c_skip(sigma) * x + f.c_out(sigma) * out.to(x.dtype)

    def velocity(self, x_t: Tensor, t: Tensor | float, code: Tensor | None = None, **kwargs) -> Tensor:
        """The rectified-flow velocity v(x_t, t) = F(x_t; c_noise = (M-1) t) of an ``rf`` model (docs/design.md §1).

        With c_in = c_skip = 1 - t and c_out = -t the sigma-space denoiser is D = x_t - t F, and the v-loss
        trains F towards n - x0, so F itself is the velocity of dx_t/dt = v; unlike ``forward`` this is
        finite at t = 1 (sigma = inf), where the RF protocol starts from x_1 = n. ``t``: scalar, 0-d or [B].
        """
        f = self.formulation
        if not isinstance(f, RF):
            raise QACError(f"the flow velocity exists for rf models only; this one is {f.name!r} "
                           "(sample it on a sigma schedule)")
        t = _per_row(t, x_t)
        c_noise = f.c_noise_of_t(t).reshape(-1).to(torch.float32)
        if code is not None:
            code = code.to(torch.float32)
        return self.backbone(x_t.to(torch.float32), c_noise, code, **kwargs).to(x_t.dtype)


def _per_row(sigma: Tensor | float, x: Tensor) -> Tensor:
    """sigma (scalar, 0-d or [B]) as a tensor in x's dtype shaped [B, 1, ...] to broadcast against x."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.ndim == 0:
        sigma = sigma.expand(x.shape[0])
    return sigma.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


def denoising_loss(denoiser: Denoiser, x0: Tensor, sigma: Tensor, noise: Tensor,
                   code: Tensor | None = None, **kwargs) -> Tensor:
    """Per-element weighted loss lambda(sigma) (D(x0 + sigma n, sigma, y) - x0)^2 (paper Alg. 1, EDM Eq. 2).

    Returns a tensor shaped like x0; the training loop sums over elements and averages over the batch
    (EDM convention) and logs the per-element mean.
    """
    s = sigma.reshape(-1, *([1] * (x0.ndim - 1)))
    weight = denoiser.formulation.loss_weight(s)
    d = denoiser(x0 + s * noise, sigma, code, **kwargs)
    return weight * (d - x0) ** 2
