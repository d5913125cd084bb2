"""U-Net building blocks with EDM SongUNet (DDPM++) semantics, written from the description in words.

* :func:`group_norm` — GroupNorm with ``min(32, C // 4)`` groups (lowered until it divides C), eps 1e-6.
* :class:`Resample` — 2x down/up with the ``[1, 1]`` filter: 2x2 average pooling / nearest upsampling.
* :class:`UNetBlock` — GN -> SiLU -> [resample] conv3x3 -> (+ Linear(emb)) -> GN -> SiLU -> dropout ->
  conv3x3 (init ~0), residual with a 1x1 / resampling skip, times ``skip_scale``; optional one-head
  self-attention (GN -> 1x1 qkv -> softmax(q^T k / sqrt(C)) -> 1x1 proj (init ~0), residual, ``skip_scale``).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from qac.nn.embeddings import init_xavier

__all__ = ["group_norm", "num_groups", "conv3x3", "Resample", "UNetBlock"]

SKIP_SCALE = math.sqrt(0.5)


def num_groups(channels: int, max_groups: int = 32, min_per_group: int = 4) -> int:
    """EDM's group count ``min(32, C // 4)``, lowered to the nearest divisor of ``C`` (at least 1).

    For the channel widths EDM uses (multiples of 32, or of 4 below 128) no lowering ever happens.

    >>> num_groups(256), num_groups(8), num_groups(12)
    (32, 2, 3)
    """
    g = max(1, min(max_groups, channels // min_per_group))
    while channels % g:
        g -= 1
    return g


def group_norm(channels: int, eps: float = 1e-6) -> nn.GroupNorm:
    """GroupNorm with :func:`num_groups` groups, eps 1e-6 as in SongUNet."""
    return nn.GroupNorm(num_groups(channels), channels, eps=eps)


def conv3x3(cin: int, cout: int, scale: float = 1.0) -> nn.Conv2d:
    """3x3 conv, padding 1, xavier-uniform weight times ``scale``, zero bias."""
    conv = nn.Conv2d(cin, cout, 3, padding=1)
    init_xavier(conv, scale)
    return conv


class Resample(nn.Module):
    """Resampling by 2 with the ``[1, 1]`` filter of EDM (``resample_filter=[1,1]``).

    ``down``: 2x2 average pooling (the normalised [1,1]x[1,1] filter, stride 2). ``up``: the transposed
    conv of that filter times 4, i.e. nearest-neighbour upsampling. Odd sizes are never passed in: the U-Net
    refuses a resolution that its levels cannot halve exactly (``avg_pool2d`` alone would round down).
    """

    def __init__(self, mode: str) -> None:
        super().__init__()
        if mode not in ("up", "down"):
            raise ValueError(f"Resample mode must be 'up' or 'down', got {mode!r}")
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, C, H/2, W/2]`` (2×2 average) for ``down``, ``[B, C, 2H, 2W]`` (nearest) for ``up``."""
        if self.mode == "down":
            return F.avg_pool2d(x, 2)
        return F.interpolate(x, scale_factor=2.0, mode="nearest")


class UNetBlock(nn.Module):
    """One DDPM++ residual block (EDM ``UNetBlock`` with ``adaptive_scale=False``).

    Args:
        cin, cout: input / output channels.
        emb_channels: width of the embedding added after conv0; 0 gives a block without embedding
            injection (the QAC condition encoder, which reads the clean image).
        resample: ``None``, ``"up"`` or ``"down"`` (applied before conv0 and on the skip path).
        attention: add one-head self-attention after the residual.
        dropout: dropout probability before conv1.
        skip_scale: output scale (``sqrt(0.5)`` in DDPM++).

    Shapes: ``x`` [B, cin, H, W], ``emb`` [B, emb_channels] -> [B, cout, H', W'].

    >>> UNetBlock(8, 16, 32, resample="down")(torch.zeros(2, 8, 4, 4), torch.zeros(2, 32)).shape
    torch.Size([2, 16, 2, 2])
    """

    def __init__(self, cin: int, cout: int, emb_channels: int, resample: str | None = None,
                 attention: bool = False, dropout: float = 0.0, skip_scale: float = SKIP_SCALE) -> None:
        super().__init__()
        self.in_channels = cin
        self.out_channels = cout
        self.dropout = dropout
        self.skip_scale = skip_scale
        self.resample = Resample(resample) if resample else None
        self.norm0 = group_norm(cin)
        self.conv0 = conv3x3(cin, cout)
        self.affine: nn.Linear | None = None
        if emb_channels > 0:
            self.affine = nn.Linear(emb_channels, cout)
            init_xavier(self.affine)
        self.norm1 = group_norm(cout)
        self.conv1 = conv3x3(cout, cout, scale=1e-5)
        self.skip: nn.Conv2d | None = None
        if cout != cin or resample:
            # EDM resample_proj=True: a 1x1 projection whenever channels or resolution change.
            self.skip = nn.Conv2d(cin, cout, 1)
            init_xavier(self.skip)
        self.attention = attention
        if attention:
            self.norm2 = group_norm(cout)
            self.qkv = nn.Conv2d(cout, 3 * cout, 1)
            init_xavier(self.qkv, math.sqrt(0.2))
            self.proj = nn.Conv2d(cout, cout, 1)
            init_xavier(self.proj, 1e-5)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, cin, H, W]``, ``emb [B, emb_channels]`` (ignored when emb_channels = 0) -> ``[B, cout, H', W']``
        (H' = H/2 for ``down``, 2H for ``up``): GN-SiLU-conv, + embedding, GN-SiLU-dropout-conv, + skip, times
        skip_scale, then the optional self-attention residual (again times skip_scale).
        """
        orig = x
        h = F.silu(self.norm0(x))
        if self.resample is not None:
            h = self.resample(h)
            orig = self.resample(orig)
        h = self.conv0(h)
        if self.affine is not None:
            if emb is None:
                raise ValueError("this UNetBlock injects an embedding: pass emb [B, emb_channels]")
            h = h + self.affine(emb)[:, :, None, None]
        h = F.silu(self.norm1(h))
        h = self.conv1(F.dropout(h, p=self.dropout, training=self.training))
        skip = self.skip(orig) if self.skip is not None else orig
        x = (h + skip) * self.skip_scale
        if self.attention:
            x = (x + self.proj(self._attend(self.norm2(x)))) * self.skip_scale
        return x

    def _attend(self, h: torch.Tensor) -> torch.Tensor:
        """One-head attention over the H*W positions, softmax in float32; [B, C, H, W] -> same."""
        b, c, hh, ww = h.shape
        q, k, v = self.qkv(h).reshape(b, c, 3, hh * ww).unbind(2)
        logits = torch.einsum("bcq,bck->bqk", q.float(), k.float()) / math.sqrt(c)
        w = torch.softmax(logits, dim=2).to(v.dtype)
        return torch.einsum("bqk,bck->bcq", w, v).reshape(b, c, hh, ww)
