"""Toy MLP backbone F for points [B, D] with the same conditioning path as the U-Net (docs/design.md §2-3).

``e = Pos(c_noise) [+ CodeEmbedding(code)]`` (width ``emb_dim``) -> ``SiLU(Linear)`` twice to ``hidden``;
the trunk is ``h = Linear(D -> hidden)(x)`` then ``depth`` times ``h = Linear(SiLU(h)) + Linear(e)``
(additive embedding injection in every hidden layer), and a zero-initialised ``Linear(hidden -> D)`` head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from qac.errors import QACError
from qac.nn.embeddings import CodeEmbedding, PositionalEmbedding, broadcast_noise, check_code, init_xavier

__all__ = ["MLPConfig", "MLPDenoiser"]


@dataclass(frozen=True)
class MLPConfig:
    """Hyper-parameters of :class:`MLPDenoiser`: point dimension, width, number of hidden layers,
    noise-embedding width and QAC code dimension (0 = unconditional)."""

    dim: int = 2
    hidden: int = 256
    depth: int = 3
    emb_dim: int = 64
    code_dim: int = 0

    def __post_init__(self) -> None:
        if self.dim < 1 or self.hidden < 1 or self.depth < 1 or self.code_dim < 0:
            raise QACError("MLPConfig needs dim, hidden, depth >= 1 and code_dim >= 0")
        if self.emb_dim < 4 or self.emb_dim % 2:
            raise QACError(f"MLPConfig.emb_dim must be an even number >= 4, got {self.emb_dim}")


class MLPDenoiser(nn.Module):
    """Backbone ``F(x [B, D], c_noise [B], code [B, d] | None) -> [B, D]`` for 2-D toy data.

    >>> net = MLPDenoiser(MLPConfig(dim=2, hidden=32, code_dim=3))
    >>> net(torch.zeros(5, 2), torch.zeros(5), torch.zeros(5, 3)).shape
    torch.Size([5, 2])
    """

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        cfg = config
        self.config = cfg
        self.code_dim = cfg.code_dim
        self.map_noise = PositionalEmbedding(cfg.emb_dim, endpoint=True, flip=True)
        self.map_code = CodeEmbedding(cfg.code_dim, cfg.emb_dim) if cfg.code_dim > 0 else None
        self.map_layer0 = nn.Linear(cfg.emb_dim, cfg.hidden)
        self.map_layer1 = nn.Linear(cfg.hidden, cfg.hidden)
        self.inp = nn.Linear(cfg.dim, cfg.hidden)
        self.layers = nn.ModuleList(nn.Linear(cfg.hidden, cfg.hidden) for _ in range(cfg.depth))
        self.emb_proj = nn.ModuleList(nn.Linear(cfg.hidden, cfg.hidden) for _ in range(cfg.depth))
        self.out = nn.Linear(cfg.hidden, cfg.dim)
        for layer in [self.map_layer0, self.map_layer1, self.inp, *self.layers, *self.emb_proj]:
            init_xavier(layer)
        init_xavier(self.out, 1e-5)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor | float, code: torch.Tensor | None = None,
                augment_labels: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` [B, D], ``c_noise`` [B] or scalar, ``code`` [B, d] iff ``code_dim > 0``; no augment input."""
        if augment_labels is not None:
            raise ValueError("MLPDenoiser has no augmentation conditioning; pass augment_labels=None")
        if x.ndim != 2 or x.shape[1] != self.config.dim:
            raise ValueError(f"MLPDenoiser expects x [B, {self.config.dim}], got {tuple(x.shape)}")
        check_code(code, self.code_dim, x.shape[0])
        e = self.map_noise(broadcast_noise(c_noise, x.shape[0], x.device))
        if self.map_code is not None:
            e = e + self.map_code(code)
        e = F.silu(self.map_layer1(F.silu(self.map_layer0(e))))
        h = self.inp(x.to(torch.float32))
        for layer, proj in zip(self.layers, self.emb_proj):
            h = layer(F.silu(h)) + proj(e)
        return self.out(F.silu(h))
