"""Embeddings shared by every backbone: the positional noise embedding and the QAC code embedding.

The noise embedding follows EDM's ``PositionalEmbedding``; the code embedding is the two-layer
MLP of paper §3.2 ("two MLP layers map the condition code to the same dimension as the time
embedding and then add them together"), docs/design.md §3.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["PositionalEmbedding", "CodeEmbedding", "init_xavier", "check_code", "broadcast_noise"]


def init_xavier(layer: nn.Linear | nn.Conv2d, scale: float = 1.0) -> None:
    """EDM-style init: xavier-uniform weight times ``scale``, zero bias (in place).

    ``scale=1e-5`` gives EDM's "init_zero" layers (output convs), ``sqrt(0.2)`` its attention qkv.
    """
    with torch.no_grad():
        nn.init.xavier_uniform_(layer.weight)
        layer.weight.mul_(scale)
        if layer.bias is not None:
            layer.bias.zero_()


class PositionalEmbedding(nn.Module):
    """Sinusoidal embedding of a scalar noise label ``c_noise`` (EDM ``PositionalEmbedding``).

    ``freq_k = (1 / max_positions) ** (k / (C/2 - 1 if endpoint else C/2))`` for ``k = 0..C/2-1`` and the
    output is ``[cos(c_noise * freq), sin(c_noise * freq)]``; with ``flip=True`` the halves are swapped to
    ``[sin, cos]`` as SongUNet does.

    Args:
        num_channels: even output width C.
        max_positions: the slowest wavelength.
        endpoint: include the frequency ``1 / max_positions`` itself (SongUNet uses True).
        flip: return ``[sin, cos]`` instead of ``[cos, sin]``.

    >>> PositionalEmbedding(8)(torch.zeros(3)).shape
    torch.Size([3, 8])
    """

    def __init__(self, num_channels: int, max_positions: int = 10000, endpoint: bool = True,
                 flip: bool = True) -> None:
        super().__init__()
        if num_channels % 2 or num_channels < 4:
            raise ValueError(f"PositionalEmbedding needs an even width >= 4, got {num_channels}")
        self.num_channels = num_channels
        self.max_positions = max_positions
        self.endpoint = endpoint
        self.flip = flip

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        """``c_noise`` [B] (any float dtype) -> embedding [B, C] float32."""
        half = self.num_channels // 2
        freqs = torch.arange(half, dtype=torch.float32, device=c_noise.device)
        freqs = freqs / (half - (1 if self.endpoint else 0))
        freqs = (1.0 / self.max_positions) ** freqs
        ang = torch.outer(c_noise.to(torch.float32).reshape(-1), freqs)
        parts = [ang.sin(), ang.cos()] if self.flip else [ang.cos(), ang.sin()]
        return torch.cat(parts, dim=1)


class CodeEmbedding(nn.Module):
    """The QAC code embedding ``Linear(d -> E) -> SiLU -> Linear(E -> E)`` (paper §3.2, docs/design.md §3).

    Its output is *added* to the noise embedding before the backbone's mapping MLP (where EDM adds
    ``map_label``). The input is the quantized code as float; callers pass
    ``qac.conditions.code_to_input(y_q, levels)`` (codes rescaled to [-1, 1]) so that the scale does not
    depend on L, but any float [B, d] works and gradients flow through it (straight-through estimator).

    >>> CodeEmbedding(4, 16)(torch.zeros(2, 4)).shape
    torch.Size([2, 16])
    """

    def __init__(self, code_dim: int, width: int) -> None:
        super().__init__()
        self.code_dim = code_dim
        self.layer0 = nn.Linear(code_dim, width)
        self.layer1 = nn.Linear(width, width)
        init_xavier(self.layer0)
        init_xavier(self.layer1)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        """``code`` [B, d] -> [B, E] float32."""
        if code.ndim != 2 or code.shape[1] != self.code_dim:
            raise ValueError(f"code must have shape [B, {self.code_dim}], got {tuple(code.shape)}")
        return self.layer1(F.silu(self.layer0(code.to(torch.float32))))


def check_code(code: torch.Tensor | None, code_dim: int, batch: int) -> None:
    """Raise ``ValueError`` (a programming error) when ``code`` does not match the backbone."""
    if code_dim > 0 and code is None:
        raise ValueError(f"backbone built with code_dim={code_dim}: forward needs code [B, {code_dim}]")
    if code_dim == 0 and code is not None:
        raise ValueError("this backbone was built with code_dim=0 but a code was passed; pass code=None")
    if code is not None and code.shape[0] != batch:
        raise ValueError(f"code batch {code.shape[0]} does not match input batch {batch}")


def broadcast_noise(c_noise: torch.Tensor | float, batch: int, device: torch.device) -> torch.Tensor:
    """Turn a scalar or [B] noise label into a float32 [B] tensor on ``device``."""
    c = torch.as_tensor(c_noise, dtype=torch.float32, device=device).reshape(-1)
    if c.numel() == 1:
        return c.expand(batch)
    if c.numel() != batch:
        raise ValueError(f"c_noise has {c.numel()} entries for a batch of {batch}")
    return c

