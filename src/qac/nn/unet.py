"""DDPM++ U-Net backbone F (EDM SongUNet semantics, docs/design.md §2) with the QAC code input (docs/design.md §3).

Mapping network (order as in EDM): ``e = Pos(c_noise)`` (endpoint, ``[sin, cos]``), ``+ CodeEmbedding(code)``
when ``code_dim > 0`` (paper §3.2), ``+ Linear_nobias(augment_labels)`` when given, then
``SiLU(Linear)`` twice to ``emb_channels = model_channels * channel_mult_emb``.

Encoder: a 3x3 stem to ``model_channels``; per level (resolution ``img_resolution >> level``) a down block
(levels > 0) then ``num_blocks`` blocks to ``model_channels * mult`` (attention where the resolution is in
``attn_resolutions``). Decoder: at the deepest level an attention block and a plain block, otherwise an up
block; then ``num_blocks + 1`` blocks each concatenating one encoder skip (attention only in the last block
of a level in ``attn_resolutions``); at level 0 GN -> SiLU -> 3x3 conv (init ~0) to ``out_channels``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from qac.errors import QACError
from qac.nn.blocks import UNetBlock, conv3x3, group_norm
from qac.nn.embeddings import CodeEmbedding, PositionalEmbedding, broadcast_noise, check_code, init_xavier

__all__ = ["UNetConfig", "UNet", "UNET_PRESETS", "unet_preset"]


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of :class:`UNet` (names follow EDM's SongUNet).

    ``channel_mult`` and ``attn_resolutions`` are stored as tuples (lists are converted).
    ``code_dim`` > 0 adds the QAC code-embedding MLP (``code_dim`` = d of the quantized code).
    """

    img_resolution: int
    in_channels: int
    out_channels: int
    model_channels: int = 128
    channel_mult: tuple[int, ...] = (2, 2, 2)
    num_blocks: int = 4
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.10
    channel_mult_emb: int = 4
    channel_mult_noise: int = 1
    augment_dim: int = 0
    code_dim: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mult", tuple(int(m) for m in self.channel_mult))
        object.__setattr__(self, "attn_resolutions", tuple(int(r) for r in self.attn_resolutions))
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise QACError(f"channel_mult must be a non-empty list of positive ints, got {self.channel_mult}")
        if self.num_blocks < 1 or self.model_channels < 4 or self.code_dim < 0 or self.augment_dim < 0:
            raise QACError("need num_blocks >= 1, model_channels >= 4, code_dim >= 0, augment_dim >= 0")
        if (self.model_channels * self.channel_mult_noise) % 2:
            raise QACError("model_channels * channel_mult_noise must be even (positional embedding)")
        if not 0.0 <= self.dropout < 1.0:
            raise QACError(f"dropout must be in [0, 1), got {self.dropout}")
        depth = len(self.channel_mult) - 1
        if self.img_resolution % (2 ** depth):
            raise QACError(f"img_resolution {self.img_resolution} cannot be halved {depth} times "
                           f"(channel_mult has {len(self.channel_mult)} levels)")

    def resolutions(self) -> list[int]:
        """Feature-map side per level, e.g. ``[32, 16, 8]`` for ``cifar10``."""
        return [self.img_resolution >> level for level in range(len(self.channel_mult))]


class UNet(nn.Module):
    """The DDPM++ backbone ``F(x, c_noise, code) -> Tensor like x`` (contract: Backbone F).

    Args of :meth:`forward`:
        x: [B, in_channels, R, R] float32 (network input, already scaled by the preconditioning).
        c_noise: [B] (or a scalar) noise label, e.g. ``ln(sigma) / 4`` for EDM.
        code: [B, code_dim] float code (see :class:`~qac.nn.embeddings.CodeEmbedding`); required iff
            ``code_dim > 0``.
        augment_labels: [B, augment_dim] or None (no augmentation conditioning).

    >>> net = UNet(unet_preset("digits", code_dim=4))
    >>> net(torch.zeros(2, 1, 8, 8), torch.zeros(2), torch.zeros(2, 4)).shape
    torch.Size([2, 1, 8, 8])
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        cfg = config
        self.config = cfg
        self.code_dim = cfg.code_dim
        noise_ch = cfg.model_channels * cfg.channel_mult_noise
        emb_ch = cfg.model_channels * cfg.channel_mult_emb
        blk = dict(emb_channels=emb_ch, dropout=cfg.dropout)

        self.map_noise = PositionalEmbedding(noise_ch, endpoint=True, flip=True)
        self.map_code = CodeEmbedding(cfg.code_dim, noise_ch) if cfg.code_dim > 0 else None
        self.map_augment: nn.Linear | None = None
        if cfg.augment_dim > 0:
            self.map_augment = nn.Linear(cfg.augment_dim, noise_ch, bias=False)
            init_xavier(self.map_augment)
        self.map_layer0 = nn.Linear(noise_ch, emb_ch)
        self.map_layer1 = nn.Linear(emb_ch, emb_ch)
        init_xavier(self.map_layer0)
        init_xavier(self.map_layer1)

        self.stem = conv3x3(cfg.in_channels, cfg.model_channels)
        self.enc = nn.ModuleList()
        skips = [cfg.model_channels]
        cout = cfg.model_channels
        for level, (mult, res) in enumerate(zip(cfg.channel_mult, cfg.resolutions())):
            if level > 0:
                self.enc.append(UNetBlock(cout, cout, resample="down", **blk))
                skips.append(cout)
            for _ in range(cfg.num_blocks):
                cin, cout = cout, cfg.model_channels * mult
                self.enc.append(UNetBlock(cin, cout, attention=res in cfg.attn_resolutions, **blk))
                skips.append(cout)

        # Decoder blocks, with a flag telling whether each one consumes an encoder skip.
        self.dec = nn.ModuleList()
        self.dec_takes_skip: list[bool] = []
        levels = list(enumerate(zip(cfg.channel_mult, cfg.resolutions())))
        for level, (mult, res) in reversed(levels):
            if level == len(cfg.channel_mult) - 1:
                self._add_dec(UNetBlock(cout, cout, attention=True, **blk), False)
                self._add_dec(UNetBlock(cout, cout, **blk), False)
            else:
                self._add_dec(UNetBlock(cout, cout, resample="up", **blk), False)
            for idx in range(cfg.num_blocks + 1):
                cin, cout = cout + skips.pop(), cfg.model_channels * mult
                attn = idx == cfg.num_blocks and res in cfg.attn_resolutions
                self._add_dec(UNetBlock(cin, cout, attention=attn, **blk), True)
        assert not skips, "bug: unused encoder skips"
        self.out_norm = group_norm(cout)
        self.out_conv = conv3x3(cout, cfg.out_channels, scale=1e-5)

    def _add_dec(self, block: UNetBlock, takes_skip: bool) -> None:
        self.dec.append(block)
        self.dec_takes_skip.append(takes_skip)

    def embed(self, c_noise: torch.Tensor, code: torch.Tensor | None,
              augment_labels: torch.Tensor | None) -> torch.Tensor:
        """The mapping network: [B] noise labels (+ code, + augment labels) -> [B, emb_channels]."""
        e = self.map_noise(c_noise)
        if self.map_code is not None:
            e = e + self.map_code(code)
        if self.map_augment is not None and augment_labels is not None:
            e = e + self.map_augment(augment_labels.to(e.dtype))
        e = F.silu(self.map_layer0(e))
        return F.silu(self.map_layer1(e))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor | float, code: torch.Tensor | None = None,
                augment_labels: torch.Tensor | None = None) -> torch.Tensor:
        """F(x; c_noise, code): ``x [B, in_channels, R, R]``, ``c_noise`` [B] or a scalar, ``code`` [B, code_dim]
        (required iff code_dim > 0), ``augment_labels`` [B, augment_dim] or None -> ``[B, out_channels, R, R]``.
        """
        check_code(code, self.code_dim, x.shape[0])
        emb = self.embed(broadcast_noise(c_noise, x.shape[0], x.device), code, augment_labels)
        h = self.stem(x)
        skips = [h]
        for block in self.enc:
            h = block(h, emb)
            skips.append(h)
        for block, takes_skip in zip(self.dec, self.dec_takes_skip):
            if takes_skip:
                h = torch.cat([h, skips.pop()], dim=1)
            h = block(h, emb)
        return self.out_conv(F.silu(self.out_norm(h)))


def _preset(res: int, ch: int, mc: int, mult: tuple[int, ...], blocks: int, attn: tuple[int, ...],
            dropout: float, augment_dim: int = 0) -> UNetConfig:
    return UNetConfig(img_resolution=res, in_channels=ch, out_channels=ch, model_channels=mc,
                      channel_mult=mult, num_blocks=blocks, attn_resolutions=attn, dropout=dropout,
                      augment_dim=augment_dim)


UNET_PRESETS: dict[str, UNetConfig] = {
    # EDM DDPM++ configs (train.py --arch=ddpmpp); 55,733,891 / ~61.8M parameters without QAC.
    "cifar10": _preset(32, 3, 128, (2, 2, 2), 4, (16,), 0.13, augment_dim=9),
    "ffhq64": _preset(64, 3, 128, (1, 2, 2, 2), 4, (16,), 0.05, augment_dim=9),
    "afhq64": _preset(64, 3, 128, (1, 2, 2, 2), 4, (16,), 0.25, augment_dim=9),
    # Small CPU presets. The deepest decoder level always has one attention block (as in EDM).
    # Measured QAC train step (encoder + U-Net, fwd + bwd + Adam), batch 64, one CPU thread of a shared box:
    # digits 87 ms, digits16 122 ms, mnist 330 ms, tiny 356 ms (benchmarks/nn_step_time.py).
    "digits": _preset(8, 1, 32, (1, 2), 2, (), 0.0),
    "digits16": _preset(16, 1, 16, (1, 2, 2), 2, (), 0.0),
    "mnist": _preset(28, 1, 16, (1, 2, 2), 2, (), 0.0),
    "tiny": _preset(32, 3, 16, (1, 2, 2), 1, (), 0.0),
}


def unet_preset(name: str, **overrides: object) -> UNetConfig:
    """A preset :class:`UNetConfig` by name, with fields replaced by ``overrides``.

    >>> unet_preset("cifar10", code_dim=20).model_channels
    128
    """
    if name not in UNET_PRESETS:
        raise QACError(f"unknown U-Net preset {name!r}; choose one of {', '.join(sorted(UNET_PRESETS))}")
    try:
        return dataclasses.replace(UNET_PRESETS[name], **overrides)
    except TypeError as exc:
        raise QACError(f"bad override for U-Net preset {name!r}: {exc}") from exc
