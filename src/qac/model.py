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
from qac.conditions.modes import CONDITIONS, Condition, gaussian_kl, reparameterize
from qac.diffusion import Denoiser, get_formulation
from qac.errors import QACError
from qac.nn import UNET_PRESETS, MLPConfig, build_backbone, unet_preset

CondMode = Literal["none", "qac", "rne", "qac+rne", "vae"]  # the keys of qac.conditions.modes.CONDITIONS
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
    cond: ``none`` (baseline), ``qac`` (encoder + FSQ code of ``code_dim`` channels with ``levels`` each,
    a codebook of levels**code_dim entries, at most 2**20 in the paper), ``rne`` (reparameterized noise
    encoder), ``qac+rne`` (both on one encoder backbone) or ``vae`` (a continuous ``code_dim``-vector code);
    see :mod:`qac.conditions.modes`. beta: the KL weight of ``rne``/``qac+rne``/``vae`` (``None``: the
    condition's default, :attr:`kl_weight`; a saved ``config.json`` without it loads as ``None``).
    ste: the straight-through gradient of the quantizer, a name in :data:`qac.conditions.fsq.STE_MODES`
    (``identity`` is the paper's; see :func:`qac.conditions.fsq_quantize`). A saved ``config.json`` without
    ``ste`` predates the option and loads as ``identity``, the gradient it was trained with.
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
    beta: float | None = None

    @property
    def condition(self) -> Condition:
        """The :class:`~qac.conditions.modes.Condition` named by ``cond`` (its heads, codebook, KL weight)."""
        return CONDITIONS[self.cond]

    @property
    def codebook_size(self) -> int:
        """|C| = L^d for a model with a QAC code (qac, qac+rne), 0 otherwise."""
        return self.levels**self.code_dim if self.condition.codebook else 0

    @property
    def kl_weight(self) -> float:
        """beta, or the condition's default (0 for conditions without a KL term)."""
        if self.beta is not None:
            return float(self.beta)
        return self.condition.default_beta or 0.0

    def validate(self) -> ModelConfig:
        """Raise :class:`QACError` on impossible settings; return self."""
        if self.cond not in CONDITIONS:
            raise QACError(f"cond must be one of {', '.join(COND_MODES)}, got {self.cond!r}")
        kl_conds = ", ".join(c.name for c in CONDITIONS.values() if c.default_beta is not None)
        checks = [
            (self.beta is None or self.beta >= 0, f"--beta (KL weight) must be >= 0, got {self.beta}"),
            (self.beta is None or self.condition.default_beta is not None,
             f"--beta is the KL weight of {kl_conds}; --cond {self.cond} has no KL term"),
            (self.levels >= 2, "code levels L must be >= 2"),
            (self.ste in STE_MODES, f"ste must be one of {', '.join(STE_MODES)}, got {self.ste!r}"),
            (self.code_dim >= 1, "code dimension d must be >= 1"),
            (not self.condition.codebook or self.levels**self.code_dim <= MAX_CODEBOOK,
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


@dataclass(frozen=True)
class TrainingInputs:
    """What the condition contributes to one training batch (:meth:`QACModel.training_inputs`).

    code: what ``forward`` takes as ``y_q`` (FSQ codes, the VAE code, or None); index: QAC code indices for
    the online weights (or None); noise: the noise of the pair (RNE: z = mu + exp(logvar/2) n, else n);
    kl: the beta-weighted KL as a per-element term to add to the loss (or None).
    """

    code: Tensor | None
    index: Tensor | None
    noise: Tensor
    kl: Tensor | None


class QACModel(nn.Module):
    """Denoiser plus the optional encoder of the condition ``cond`` (:mod:`qac.conditions.modes`).

    ``encode(x0)`` gives the straight-through quantized code y_q in {0..L-1}^d (float, differentiable
    w.r.t. the encoder through the STE) and its mixed-radix index; ``forward(x, sigma, y_q)`` is the
    conditional denoiser D(x, sigma, y_q) (y_q: the FSQ code for qac/qac+rne, the continuous code for vae,
    ignored/None otherwise). ``training_inputs`` is the condition's part of a training step.
    """

    def __init__(self, denoiser: Denoiser, encoder: nn.Module | None, levels: int, code_dim: int,
                 item_shape: tuple[int, ...], ste: str = "identity", cond: str | None = None,
                 beta: float = 0.0) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.encoder = encoder
        self.cond = cond if cond is not None else ("qac" if encoder is not None else "none")
        self.condition = CONDITIONS[self.cond]
        self.levels = levels
        self.code_dim = code_dim if self.condition.code_input else 0
        self.item_shape = tuple(item_shape)
        self.ste = ste
        self.beta = float(beta)

    @property
    def formulation(self):
        """The denoiser's :class:`~qac.diffusion.formulations.Formulation` (preconditioning, sigma law)."""
        return self.denoiser.formulation

    @property
    def conditional(self) -> bool:
        """The model has a QAC code with sampling weights (qac, qac+rne)."""
        return self.condition.codebook

    def _encoder_outputs(self, x0: Tensor) -> dict:
        if self.encoder is None:
            raise QACError("this model has no condition encoder (trained with --cond none)")
        out = self.encoder.outputs(x0.to(torch.float32))
        flat = [t for v in out.values() for t in (v if isinstance(v, tuple) else (v,))]
        if not all(bool(torch.isfinite(t).all()) for t in flat):
            raise NonFiniteError("the condition encoder produced NaN/Inf (non-finite input or diverged weights)")
        return out

    def encode(self, x0: Tensor) -> tuple[Tensor, Tensor]:
        """Paper Alg. 1 lines 6-7: y = E_phi(x0), y_q = y + sg(floor(L sigmoid(y)) - y); returns (y_q, index)."""
        if not self.conditional:
            raise QACError(f"this model has no QAC code (trained with --cond {self.cond})")
        y = self.encoder(x0.to(torch.float32))
        if not bool(torch.isfinite(y).all()):
            raise NonFiniteError("the condition encoder produced NaN/Inf (non-finite input or diverged weights)")
        y_q = fsq_quantize(y, self.levels, self.ste)
        return y_q, codes_to_index(y_q.detach(), self.levels)

    def noise_posterior(self, x0: Tensor) -> tuple[Tensor, Tensor]:
        """RNE's q(x1 | x0) = N(mu, diag exp(logvar)): ``(mu, logvar)`` shaped like x0 (rne, qac+rne)."""
        if not self.condition.noise_encoder:
            raise QACError(f"this model has no noise encoder (trained with --cond {self.cond})")
        return self._encoder_outputs(x0)["noise"]

    def latent_posterior(self, x0: Tensor) -> tuple[Tensor, Tensor]:
        """The VAE condition's q(c | x0) = N(mu, diag exp(logvar)): ``(mu, logvar)`` [B, d] (vae)."""
        if not self.condition.continuous_code:
            raise QACError(f"this model has no continuous code (trained with --cond {self.cond})")
        return self._encoder_outputs(x0)["latent"]

    def training_inputs(self, x0: Tensor, noise: Tensor, code_noise: Tensor | None = None) -> TrainingInputs:
        """The condition's part of Alg. 1 for one batch (docs/design.md §3, §7).

        qac: y_q = FSQ(E(x0)) and its index. rne: the pair's noise becomes z = mu + exp(logvar/2) n and
        the loss gains beta * KL(q || N(0, I)) per element (RNE's per-dimension KL; with the loop's "sum over
        elements" it keeps RNE's ratio of per-dimension flow loss to per-dimension KL). vae: c = mu +
        exp(logvar/2) eps with ``code_noise`` eps [B, d] (None: c = mu), and beta * sum_d KL per item, spread
        evenly over the item's elements. qac+rne: qac and rne from one backbone pass.
        """
        heads = self.condition.heads
        if not heads:
            return TrainingInputs(None, None, noise, None)
        if heads == ("code",):  # QAC alone: exactly the computation of encode()
            y_q, idx = self.encode(x0)
            return TrainingInputs(y_q, idx, noise, None)
        out = self._encoder_outputs(x0)
        code = idx = kl = None
        if "code" in out:
            code = fsq_quantize(out["code"], self.levels, self.ste)
            idx = codes_to_index(code.detach(), self.levels)
        if "noise" in out:
            mu, logvar = out["noise"]
            noise = reparameterize(mu, logvar, noise)
            kl = self.beta * gaussian_kl(mu, logvar)
        if "latent" in out:
            mu, logvar = out["latent"]
            code = mu if code_noise is None else reparameterize(mu, logvar, code_noise.to(mu))
            per_item = gaussian_kl(mu, logvar).sum(dim=1) * (self.beta / x0[0].numel())
            kl = per_item.reshape(-1, *([1] * (x0.ndim - 1))).expand_as(x0)
        return TrainingInputs(code, idx, noise, kl)

    def _code_input(self, y_q: Tensor | None) -> Tensor | None:
        """What the code embedding reads: FSQ levels rescaled to [-1, 1], a VAE code as it is, else None."""
        if not self.condition.code_input:
            return None
        if y_q is None:
            raise ValueError(f"a --cond {self.cond} model needs a code y_q")
        return code_to_input(y_q, self.levels) if self.condition.codebook else y_q

    def forward(self, x: Tensor, sigma: Tensor | float, y_q: Tensor | None = None, **kwargs) -> Tensor:
        """x0_hat = D(x, sigma, y_q) (paper Alg. 1, §3.4): ``x`` [B, ...], ``sigma`` a scalar, 0-d or [B].

        ``y_q`` is the code [B, d]: FSQ levels 0..L-1 (rescaled to [-1, 1] here) or a VAE code as it is; ignored
        (may be None) for a model without a code input. Returns [B, ...] in x's dtype; other keywords go to the
        backbone.
        """
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
    cond = cfg.condition
    code_dim = cfg.code_dim if cond.code_input else 0
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
    heads = {"code": cfg.code_dim, "noise": 0, "latent": cfg.code_dim}
    encoder = build_encoder(net_cfg, {h: heads[h] for h in cond.heads}) if cond.heads else None
    return QACModel(denoiser, encoder, cfg.levels, cfg.code_dim, item_shape, cfg.ste, cfg.cond, cfg.kl_weight)
