"""The trainable pair of Algorithm 1: denoiser D_theta and (optionally) the condition encoder E_phi.

One module holds both, so that a single optimizer, one EMA copy and one checkpoint cover theta and phi.
:class:`ModelConfig` says what to build; :func:`build_model` builds it for data items of a given shape.

>>> model = build_model(ModelConfig(arch="mlp", code_dim=3), "points", (2,))
>>> y_q, index = model.encode(torch.zeros(4, 2))
>>> y_q.shape, index.shape, model(torch.zeros(4, 2), torch.ones(4), y_q).shape
(torch.Size([4, 3]), torch.Size([4]), torch.Size([4, 2]))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from qac.conditions import build_encoder, code_to_input, codes_to_index, fsq_quantize
from qac.conditions.fsq import DEFAULT_STE
from qac.diffusion import Denoiser, get_formulation
from qac.errors import QACError
from qac.nn import UNET_PRESETS, MLPConfig, build_backbone, unet_preset

CondMode = Literal["none", "qac"]
FormulationName = Literal["edm", "vp", "ve", "rf"]
SteMode = Literal["identity", "sigmoid", "bounded", "softclip"]  # the keys of qac.conditions.fsq.STE_MODES
COND_MODES: tuple[str, ...] = get_args(CondMode)
STE_MODES: tuple[str, ...] = get_args(SteMode)
MAX_CODEBOOK = 2**24


@dataclass(frozen=True)
class ModelConfig:
    """What network to build.

    arch: a U-Net preset name (``digits``, ``mnist``, ``tiny``, ``cifar10``, ``ffhq64``, ``afhq64``) or
    ``mlp`` for points; ``auto`` picks ``mlp`` for points and ``digits``/``tiny`` for small images.
    cond: ``none`` (baseline) or ``qac`` (encoder + FSQ code of ``code_dim`` channels with ``levels`` each,
    a codebook of levels**code_dim entries, at most 2**20 in the paper). ste: the straight-through gradient
    of the quantizer, a name in :data:`qac.conditions.fsq.STE_MODES` (``identity`` is the paper's; see
    :func:`qac.conditions.fsq_quantize`). A saved ``config.json`` without ``ste`` predates the option and
    loads as ``identity``, the gradient it was trained with.
    augment_dim: width of the U-Net's augmentation-label input (``None``: the preset's, 9 for the EDM
    presets; training with ``augment > 0`` sets it, see :mod:`qac.data.augment`).
    """

    arch: str = "auto"
    formulation: FormulationName = "edm"
    cond: CondMode = "qac"
    levels: int = 2
    code_dim: int = 8
    dropout: float | None = None
    model_channels: int | None = None
    ste: SteMode = DEFAULT_STE
    augment_dim: int | None = None

    @property
    def codebook_size(self) -> int:
        """|C| = L^d for a QAC model, 0 for the baseline."""
        return self.levels**self.code_dim if self.cond == "qac" else 0

    def validate(self) -> ModelConfig:
        """Raise :class:`QACError` on impossible settings; return self."""
        checks = [
            (self.cond in COND_MODES, f"cond must be one of {', '.join(COND_MODES)}, got {self.cond!r}"),
            (self.levels >= 2, "code levels L must be >= 2"),
            (self.ste in STE_MODES, f"ste must be one of {', '.join(STE_MODES)}, got {self.ste!r}"),
            (self.code_dim >= 1, "code dimension d must be >= 1"),
            (self.cond == "none" or self.levels**self.code_dim <= MAX_CODEBOOK,
             f"codebook L^d = {self.levels}^{self.code_dim} is too large (at most 2^24; the paper uses up to 2^20)"),
            (self.arch in ("auto", "mlp") or self.arch in UNET_PRESETS,
             f"unknown arch {self.arch!r}; choose auto, mlp or one of {', '.join(sorted(UNET_PRESETS))}"),
            (self.dropout is None or 0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}"),
            (self.model_channels is None or self.model_channels >= (1 if self.arch == "mlp" else 4),
             f"--channels (base width) must be >= {1 if self.arch == 'mlp' else 4}, got {self.model_channels}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise QACError(msg)
        return self


class NonFiniteError(QACError):
    """NaN or Inf where a finite value is required (diverged training or bad input data)."""


class QACModel(nn.Module):
    """Denoiser plus optional QAC encoder.

    ``encode(x0)`` gives the straight-through quantized code y_q in {0..L-1}^d (float, differentiable
    w.r.t. the encoder through the STE) and its mixed-radix index; ``forward(x, sigma, y_q)`` is the
    conditional denoiser D(x, sigma, y_q) (y_q ignored/None for the baseline).
    """

    def __init__(self, denoiser: Denoiser, encoder: nn.Module | None, levels: int, code_dim: int,
                 item_shape: tuple[int, ...], ste: str = "identity") -> None:
        super().__init__()
        self.denoiser = denoiser
        self.encoder = encoder
        self.levels = levels
        self.code_dim = code_dim if encoder is not None else 0
        self.item_shape = tuple(item_shape)
        self.ste = ste

    @property
    def formulation(self):
        return self.denoiser.formulation

    @property
    def conditional(self) -> bool:
        return self.encoder is not None

    def encode(self, x0: Tensor) -> tuple[Tensor, Tensor]:
        """Paper Alg. 1 lines 6-7: y = E_phi(x0), y_q = y + sg(floor(L sigmoid(y)) - y); returns (y_q, index)."""
        if self.encoder is None:
            raise QACError("this model has no condition encoder (trained with --cond none)")
        y = self.encoder(x0.to(torch.float32))
        if not bool(torch.isfinite(y).all()):
            raise NonFiniteError("the condition encoder produced NaN/Inf (non-finite input or diverged weights)")
        y_q = fsq_quantize(y, self.levels, self.ste)
        return y_q, codes_to_index(y_q.detach(), self.levels)

    def _code_input(self, y_q: Tensor | None) -> Tensor | None:
        if self.encoder is None:
            return None
        if y_q is None:
            raise ValueError("a QAC model needs a code y_q")
        return code_to_input(y_q, self.levels)

    def forward(self, x: Tensor, sigma: Tensor | float, y_q: Tensor | None = None, **kwargs) -> Tensor:
        return self.denoiser(x, sigma, self._code_input(y_q), **kwargs)

    def velocity(self, x_t: Tensor, t: Tensor | float, y_q: Tensor | None = None, **kwargs) -> Tensor:
        """The RF velocity v(x_t, t, y_q) of an ``rf`` model (:meth:`qac.diffusion.Denoiser.velocity`)."""
        return self.denoiser.velocity(x_t, t, self._code_input(y_q), **kwargs)


def resolve_arch(cfg: ModelConfig, kind: str, item_shape: tuple[int, ...]) -> str:
    """The backbone name for ``arch='auto'``: ``mlp`` for points, ``digits`` up to 16 px, else ``tiny``."""
    if cfg.arch != "auto":
        return cfg.arch
    if kind == "points":
        return "mlp"
    return "digits" if max(item_shape[1:]) <= 16 else "tiny"


def build_model(cfg: ModelConfig, kind: str, item_shape: tuple[int, ...]) -> QACModel:
    """Build a :class:`QACModel` for data items of ``item_shape`` ([C,H,W] images or [D] points)."""
    cfg.validate()
    arch = resolve_arch(cfg, kind, item_shape)
    code_dim = cfg.code_dim if cfg.cond == "qac" else 0
    if arch == "mlp":
        if kind != "points":
            raise QACError("arch 'mlp' is for 2-D/point data; use a U-Net preset for images")
        if cfg.augment_dim:
            raise QACError("augmentation labels are for U-Nets on images, not the point-data MLP")
        overrides = {} if cfg.model_channels is None else {"hidden": cfg.model_channels}
        net_cfg = MLPConfig(dim=item_shape[0], code_dim=code_dim, **overrides)
    else:
        if kind != "image":
            raise QACError(f"arch {arch!r} is a U-Net for images; use --arch mlp for point data")
        c, h, w = item_shape
        if h != w:
            raise QACError(f"images must be square, got {h}x{w}")
        overrides = {"img_resolution": h, "in_channels": c, "out_channels": c, "code_dim": code_dim}
        if cfg.dropout is not None:
            overrides["dropout"] = cfg.dropout
        if cfg.model_channels is not None:
            overrides["model_channels"] = cfg.model_channels
        if cfg.augment_dim is not None:
            overrides["augment_dim"] = cfg.augment_dim
        net_cfg = unet_preset(arch, **overrides)
    backbone = build_backbone(net_cfg)
    denoiser = Denoiser(backbone, get_formulation(cfg.formulation))
    encoder = build_encoder(net_cfg, cfg.code_dim) if cfg.cond == "qac" else None
    return QACModel(denoiser, encoder, cfg.levels, cfg.code_dim, item_shape, cfg.ste)
