"""The condition encoder E_phi: clean data x0 -> unquantized logits y in R^d (paper §3.2, docs/design.md §3).

For images it is the downsampling half of the denoiser's U-Net, slimmed: ``model_channels // 4`` channels
(at least 8; GroupNorm groups follow :func:`qac.nn.num_groups`, which always divides the width),
``num_blocks // 2`` blocks per level (at least 1), the same channel multipliers and attention resolutions,
no noise embedding (blocks without embedding injection) and no dropout (codes of a clean image should be
deterministic); then GN -> SiLU -> global average pooling -> ``Linear(C -> d)``.
For points it is a small MLP (``D -> 128 -> 128 -> d``, SiLU).
Quantize the output with :func:`qac.conditions.fsq_quantize`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from qac.errors import QACError
from qac.nn.blocks import UNetBlock, conv3x3, group_norm
from qac.nn.embeddings import init_xavier
from qac.nn.mlp import MLPConfig
from qac.nn.unet import UNetConfig

__all__ = ["ENCODERS", "UNetEncoder", "MLPEncoder", "build_encoder", "encoder_channels"]


def encoder_channels(model_channels: int) -> int:
    """Encoder base width: a quarter of the denoiser's, at least 8 (``128 -> 32``, ``32 -> 8``)."""
    return max(8, model_channels // 4)


class UNetEncoder(nn.Module):
    """Image encoder ``E_phi(x0 [B, C, R, R]) -> y [B, d]`` (downsampling half of the U-Net, slimmed).

    >>> enc = UNetEncoder(UNetConfig(8, 1, 1, model_channels=32, channel_mult=(1, 2), num_blocks=2), 6)
    >>> enc(torch.zeros(3, 1, 8, 8)).shape
    torch.Size([3, 6])
    """

    def __init__(self, config: UNetConfig, code_dim: int) -> None:
        super().__init__()
        if code_dim < 1:
            raise QACError(f"the condition encoder needs code_dim >= 1, got {code_dim}")
        self.code_dim = code_dim
        base = encoder_channels(config.model_channels)
        blocks = max(1, config.num_blocks // 2)
        self.stem = conv3x3(config.in_channels, base)
        self.blocks = nn.ModuleList()
        cout = base
        for level, (mult, res) in enumerate(zip(config.channel_mult, config.resolutions())):
            if level > 0:
                self.blocks.append(UNetBlock(cout, cout, emb_channels=0, resample="down"))
            for _ in range(blocks):
                cin, cout = cout, base * mult
                self.blocks.append(UNetBlock(cin, cout, emb_channels=0,
                                             attention=res in config.attn_resolutions))
        self.out_norm = group_norm(cout)
        self.out = nn.Linear(cout, code_dim)
        init_xavier(self.out)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        h = self.stem(x0)
        for block in self.blocks:
            h = block(h)
        return self.out(F.silu(self.out_norm(h)).mean(dim=(2, 3)))


class MLPEncoder(nn.Module):
    """Point encoder ``E_phi(x0 [B, D]) -> y [B, d]``: two SiLU hidden layers of 128, then a Linear to d.

    >>> MLPEncoder(MLPConfig(dim=2), 4)(torch.zeros(5, 2)).shape
    torch.Size([5, 4])
    """

    def __init__(self, config: MLPConfig, code_dim: int, hidden: int = 128) -> None:
        super().__init__()
        if code_dim < 1:
            raise QACError(f"the condition encoder needs code_dim >= 1, got {code_dim}")
        self.code_dim = code_dim
        self.net = nn.Sequential(nn.Linear(config.dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                                 nn.SiLU(), nn.Linear(hidden, code_dim))
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                init_xavier(layer)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        return self.net(x0.to(torch.float32))


ENCODERS: dict[type, Callable[[object, int], nn.Module]] = {
    UNetConfig: UNetEncoder,
    MLPConfig: MLPEncoder,
}


def build_encoder(config: UNetConfig | MLPConfig, code_dim: int) -> nn.Module:
    """The condition encoder matching a denoiser backbone config, with ``code_dim`` = d outputs.

    ``config.code_dim`` (the denoiser's) is not read; pass d explicitly.

    >>> build_encoder(MLPConfig(), 3).code_dim
    3
    """
    try:
        cls = ENCODERS[type(config)]
    except KeyError:
        raise TypeError(f"no encoder registered for config type {type(config).__name__}") from None
    return cls(config, code_dim)
