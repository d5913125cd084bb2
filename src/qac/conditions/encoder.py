"""The encoder E_phi: one backbone on the clean data x0 and named output heads (paper §3.2, §4.2; docs/design.md §3).

Backbone. For images it is the downsampling half of the denoiser's U-Net, slimmed: ``model_channels // 4``
channels (at least 8; GroupNorm groups follow :func:`qac.nn.num_groups`, which always divides the width),
``num_blocks // 2`` blocks per level (at least 1), the same channel multipliers and attention resolutions,
no noise embedding (blocks without embedding injection) and no dropout (codes of a clean image should be
deterministic); its features are ``SiLU(GN(h))`` of the last level. For points it is a small MLP
(``D -> 128 -> 128``, SiLU).

Heads (:data:`HEADS`, built on the backbone's features):

* ``code``   QAC's logits y in R^d: global average pooling (images) then ``Linear(C -> d)``; quantize
  with :func:`qac.conditions.fsq_quantize`. Stored as the attribute ``out`` (the name it always had).
* ``noise``  RNE's q(x1 | x0) = N(mu, diag exp(logvar)) over the whole data item. Images: a 3x3 conv of
  the last feature map to ``2C`` channels (init ~0, so q starts as N(0, I)), then bilinear upsampling to the
  item's resolution; points: ``Linear(128 -> 2D)`` (init ~0). Returns ``(mu, logvar)`` shaped like x0.
* ``latent`` the VAE condition's q(c | x0) = N(mu, diag exp(logvar)) over a d-vector: pooling, then
  ``Linear(C -> 2d)``. Returns ``(mu, logvar)`` [B, d].

Initialisation order is: backbone layers, heads' layers, then the backbone's and heads' deferred
initialisations, so a code-only encoder draws exactly the random numbers it always drew.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from qac.errors import QACError
from qac.nn.blocks import UNetBlock, conv3x3, group_norm
from qac.nn.embeddings import init_xavier
from qac.nn.mlp import MLPConfig
from qac.nn.unet import UNetConfig

__all__ = ["ENCODERS", "HEADS", "ConditionEncoder", "MLPEncoder", "UNetEncoder", "build_encoder",
           "encoder_channels"]

#: EDM's "init_zero" scale for output layers that should start near 0.
_ZERO_INIT = 1e-5


def encoder_channels(model_channels: int) -> int:
    """Encoder base width: a quarter of the denoiser's, at least 8 (``128 -> 32``, ``32 -> 8``)."""
    return max(8, model_channels // 4)


# ---- heads --------------------------------------------------------------------------------------------------
class VectorHead(nn.Linear):
    """Pooled features -> ``size`` outputs (a plain Linear, so its keys stay ``weight``/``bias``)."""

    def forward(self, features: Tensor) -> Tensor:  # type: ignore[override]
        pooled = features.mean(dim=(2, 3)) if features.ndim == 4 else features
        return super().forward(pooled)

    def reset(self) -> None:
        init_xavier(self)


class GaussianVectorHead(VectorHead):
    """Pooled features -> ``(mu, logvar)`` of a ``size // 2``-dimensional Gaussian."""

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        return super().forward(features).chunk(2, dim=1)


class NoiseHead(nn.Module):
    """Features -> ``(mu, logvar)`` shaped like the data item (RNE's per-dimension Gaussian, docs/design.md §7).

    Images: ``conv3x3(C -> 2 channels_out)`` at the last feature resolution, bilinear upsampling to
    ``resolution``; points: ``Linear(C -> 2 D)``. Both start at ~0 (q = N(0, I), the independent coupling).
    """

    def __init__(self, width: int, item_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.item_shape = tuple(item_shape)
        out = 2 * item_shape[0]
        self.proj: nn.Module = (nn.Conv2d(width, out, 3, padding=1) if len(item_shape) == 3
                                else nn.Linear(width, out))

    def reset(self) -> None:
        init_xavier(self.proj, _ZERO_INIT)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        h = self.proj(features)
        if h.ndim == 4 and h.shape[-2:] != self.item_shape[1:]:
            h = F.interpolate(h, size=self.item_shape[1:], mode="bilinear", align_corners=False)
        return h.chunk(2, dim=1)


@dataclass(frozen=True)
class HeadSpec:
    """How to build a head: the attribute it is stored under and ``build(width, item_shape, size)``."""

    attr: str
    build: Callable[[int, tuple[int, ...], int], nn.Module]


#: Head name -> how to build it; ``size`` is d for ``code`` and ``latent`` (ignored by ``noise``).
HEADS: dict[str, HeadSpec] = {
    "code": HeadSpec("out", lambda width, shape, size: VectorHead(width, size)),
    "noise": HeadSpec("noise", lambda width, shape, size: NoiseHead(width, shape)),
    "latent": HeadSpec("latent", lambda width, shape, size: GaussianVectorHead(width, 2 * size)),
}


# ---- backbones ----------------------------------------------------------------------------------------------
class ConditionEncoder(nn.Module):
    """A backbone (:meth:`features`) with the heads named in ``heads`` (name -> size, see :data:`HEADS`).

    ``outputs(x0)`` runs the backbone once and returns every head's output by name; ``forward(x0)`` is the
    ``code`` head's logits y [B, d] (the QAC encoder).
    """

    width: int
    item_shape: tuple[int, ...]

    def _add_heads(self, heads: int | Mapping[str, int]) -> None:
        heads = {"code": heads} if isinstance(heads, int) else dict(heads)
        if not heads:
            raise QACError("the encoder needs at least one head")
        self.head_names = tuple(heads)
        for name, size in heads.items():
            if name not in HEADS:
                raise QACError(f"unknown encoder head {name!r}; choose from {', '.join(HEADS)}")
            if name != "noise" and size < 1:
                raise QACError(f"the condition encoder needs code_dim >= 1, got {size}")
            spec = HEADS[name]
            self.add_module(spec.attr, spec.build(self.width, self.item_shape, size))
        self.code_dim = int(heads.get("code", heads.get("latent", 0)))
        self._reset_backbone()
        for name in self.head_names:
            self.head(name).reset()

    def _reset_backbone(self) -> None:
        """Deferred initialisation of the backbone's layers (after the heads were built)."""

    def head(self, name: str) -> nn.Module:
        """The module of head ``name`` (the ``code`` head is stored as ``out``; see :data:`HEADS`)."""
        return getattr(self, HEADS[name].attr)

    def features(self, x0: Tensor) -> Tensor:
        """Backbone features of the clean data x0: ``[B, width, h, w]`` for images, ``[B, width]`` for points."""
        raise NotImplementedError

    def outputs(self, x0: Tensor) -> dict[str, Tensor | tuple[Tensor, Tensor]]:
        """Every head's output by name from one backbone pass over x0: ``code`` the logits y [B, d], ``noise`` and
        ``latent`` a ``(mu, logvar)`` pair (see :data:`HEADS`).
        """
        f = self.features(x0)
        return {name: self.head(name)(f) for name in self.head_names}

    def forward(self, x0: Tensor) -> Tensor:
        """The logits y = E_phi(x0) [B, d] of the ``code`` head, before quantization (paper §3.2);
        :class:`QACError` for an encoder without a code head.
        """
        if "code" not in self.head_names:
            raise QACError("this encoder has no code head")
        return self.out(self.features(x0))


class UNetEncoder(ConditionEncoder):
    """Image encoder ``E_phi(x0 [B, C, R, R]) -> y [B, d]`` (downsampling half of the U-Net, slimmed).

    >>> enc = UNetEncoder(UNetConfig(8, 1, 1, model_channels=32, channel_mult=(1, 2), num_blocks=2), 6)
    >>> enc(torch.zeros(3, 1, 8, 8)).shape
    torch.Size([3, 6])
    >>> mu, logvar = UNetEncoder(UNetConfig(8, 1, 1, channel_mult=(1, 2)), {"noise": 0}).outputs(
    ...     torch.zeros(3, 1, 8, 8))["noise"]
    >>> mu.shape
    torch.Size([3, 1, 8, 8])
    """

    def __init__(self, config: UNetConfig, heads: int | Mapping[str, int]) -> None:
        super().__init__()
        base = encoder_channels(config.model_channels)
        blocks = max(1, config.num_blocks // 2)
        self.item_shape = (config.in_channels, config.img_resolution, config.img_resolution)
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
        self.width = cout
        self._add_heads(heads)

    def features(self, x0: Tensor) -> Tensor:
        """SiLU(GroupNorm(h)) of the last level: ``x0 [B, C, R, R] -> [B, width, r, r]``, r = R / 2^(levels - 1)."""
        h = self.stem(x0)
        for block in self.blocks:
            h = block(h)
        return F.silu(self.out_norm(h))


class MLPEncoder(ConditionEncoder):
    """Point encoder ``E_phi(x0 [B, D]) -> y [B, d]``: two SiLU hidden layers of 128, then a Linear to d.

    >>> MLPEncoder(MLPConfig(dim=2), 4)(torch.zeros(5, 2)).shape
    torch.Size([5, 4])
    """

    def __init__(self, config: MLPConfig, heads: int | Mapping[str, int], hidden: int = 128) -> None:
        super().__init__()
        self.item_shape = (config.dim,)
        self.net = nn.Sequential(nn.Linear(config.dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.width = hidden
        self._add_heads(heads)
        self._register_load_state_dict_pre_hook(_rename_mlp_code_head)

    def _reset_backbone(self) -> None:
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                init_xavier(layer)

    def features(self, x0: Tensor) -> Tensor:
        """Hidden features ``[B, hidden]`` (128 by default) of ``x0 [B, D]``, cast to float32."""
        return self.net(x0.to(torch.float32))


def _rename_mlp_code_head(state: dict, prefix: str, *args) -> None:
    """Weights saved before the heads were split off keep the code head as ``net.4``: load it as ``out``."""
    for key in ("weight", "bias"):
        old = f"{prefix}net.4.{key}"
        if old in state:
            state[f"{prefix}out.{key}"] = state.pop(old)


ENCODERS: dict[type, Callable[[object, int | Mapping[str, int]], ConditionEncoder]] = {
    UNetConfig: UNetEncoder,
    MLPConfig: MLPEncoder,
}


def build_encoder(config: UNetConfig | MLPConfig, heads: int | Mapping[str, int]) -> ConditionEncoder:
    """The encoder matching a denoiser backbone config; ``heads`` is d (one ``code`` head) or name -> size.

    ``config.code_dim`` (the denoiser's) is not read; pass d explicitly.

    >>> build_encoder(MLPConfig(), 3).code_dim
    3
    >>> build_encoder(MLPConfig(), {"code": 3, "noise": 0}).head_names
    ('code', 'noise')
    """
    try:
        cls = ENCODERS[type(config)]
    except KeyError:
        raise TypeError(f"no encoder registered for config type {type(config).__name__}") from None
    return cls(config, heads)
