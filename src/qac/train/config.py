"""Typed, frozen training configuration (resolved and saved as ``config.json`` in every run folder)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qac.conditions.fsq import DEFAULT_STE, PAPER_STE, STE_MODES
from qac.errors import QACError

COND_MODES = ("none", "qac")


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
    """

    arch: str = "auto"
    formulation: str = "edm"
    cond: str = "qac"
    levels: int = 2
    code_dim: int = 8
    dropout: float | None = None
    model_channels: int | None = None
    ste: str = DEFAULT_STE

    @property
    def codebook_size(self) -> int:
        return self.levels**self.code_dim if self.cond == "qac" else 0


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; defaults train a small QAC model on scikit-learn digits.

    Schedules follow EDM: linear learning-rate warm-up over ``lr_warmup_steps`` steps, EMA half-life
    ``ema_halflife_img`` images with ramp-up ``ema_rampup_ratio`` (half-life <= ratio * images seen).
    """

    data: str = "digits"
    resolution: int | None = None
    max_items: int | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    lr_warmup_steps: int = 200
    ema_halflife_img: float = 500_000.0
    ema_rampup_ratio: float | None = 0.05
    xflip: bool = False
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    log_every: int = 50
    snapshot_every: int = 500
    grid_every: int = 500
    grid_size: int = 64
    grid_steps: int = 10

    def validate(self) -> TrainConfig:
        """Raise :class:`QACError` on impossible settings; return self."""
        m = self.model
        checks = [
            (self.steps >= 1, "steps must be >= 1"),
            (self.batch_size >= 1, "batch size must be >= 1"),
            (self.lr > 0, "learning rate must be > 0"),
            (self.lr_warmup_steps >= 0, "lr warm-up must be >= 0"),
            (self.ema_halflife_img > 0, "EMA half-life must be > 0"),
            (m.cond in COND_MODES, f"cond must be one of {', '.join(COND_MODES)}, got {m.cond!r}"),
            (m.levels >= 2, "code levels L must be >= 2"),
            (m.ste in STE_MODES, f"ste must be one of {', '.join(STE_MODES)}, got {m.ste!r}"),
            (m.code_dim >= 1, "code dimension d must be >= 1"),
            (m.cond == "none" or m.levels**m.code_dim <= 2**24,
             f"codebook L^d = {m.levels}^{m.code_dim} is too large (at most 2^24; the paper uses up to 2^20)"),
            (min(self.log_every, self.snapshot_every, self.grid_every) >= 1, "intervals must be >= 1"),
            (self.grid_size >= 1 and self.grid_steps >= 1, "grid size and steps must be >= 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise QACError(msg)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        mknown = {f.name for f in dataclasses.fields(ModelConfig)}
        unknown = (set(d) - known) | (set(d.get("model", {})) - mknown)
        if unknown:
            raise QACError(f"unknown config keys: {', '.join(sorted(unknown))}")
        # written before the option existed: trained with the paper's gradient, whatever today's default is
        model = ModelConfig(**{"ste": PAPER_STE, **d.pop("model", {})})
        return TrainConfig(model=model, **d)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def load_config(path: str | Path) -> TrainConfig:
    """Read a ``config.json`` written by :func:`qac.train.train`."""
    path = Path(path)
    try:
        return TrainConfig.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise QACError(f"no config at {path}") from None
    except (json.JSONDecodeError, TypeError) as exc:
        raise QACError(f"bad config file {path}: {exc}") from None
