"""Recipes: every hyper-parameter of the paper's runs under one name (``qac train --recipe NAME``).

The QAC paper trains "under the same training configuration as EDM" (paper §4.3) with a codebook of
|C| = 2^20 (L = 2, d = 20). EDM's settings (Karras et al. 2022, ``train.py``): Adam (0.9, 0.999, 1e-8),
200 Mimg, learning-rate warm-up over 10 Mimg, EMA half-life 0.5 Mimg with ramp-up ratio 0.05, snapshots every
2.5 Mimg; CIFAR-10 DDPM++: batch 512, lr 1e-3, dropout 0.13, augment 0.12; FFHQ/AFHQv2 64×64 (channel
multipliers 1, 2, 2, 2): batch 256, lr 2e-4, augment 0.15, dropout 0.05 (FFHQ) or 0.25 (AFHQv2).

Durations are in images; they become steps for the batch size in effect (``ceil(images / batch)``), so
``--batch`` can change and the schedule stays the same in images. Any flag given explicitly overrides the
recipe (including ``--steps`` and ``--warmup``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from qac.errors import QACError
from qac.model import ModelConfig
from qac.train.config import TrainConfig

MIMG = 1_000_000


@dataclass(frozen=True)
class Recipe:
    """A paper run: data (the EDM ``dataset_tool`` zip it expects), network, schedules in images."""

    name: str
    summary: str
    data: str
    arch: str
    cond: str
    batch: int
    lr: float
    dropout: float
    augment: float
    duration_img: float = 200 * MIMG
    lr_rampup_img: float = 10 * MIMG
    ema_halflife_img: float = 0.5 * MIMG
    ema_rampup_ratio: float = 0.05
    snapshot_img: float = 2.5 * MIMG
    log_img: float = 50_000
    levels: int = 2
    code_dim: int = 20


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("cifar10-edm", "EDM baseline, unconditional CIFAR-10 32x32, DDPM++ (no QAC)", "cifar10-32x32.zip",
           "cifar10", "none", 512, 1e-3, 0.13, 0.12),
    Recipe("cifar10-qac", "QAC |C| = 2^20 on unconditional CIFAR-10 32x32, EDM's DDPM++ settings",
           "cifar10-32x32.zip", "cifar10", "qac", 512, 1e-3, 0.13, 0.12),
    Recipe("ffhq64-qac", "QAC |C| = 2^20 on FFHQ 64x64, EDM's FFHQ settings", "ffhq-64x64.zip",
           "ffhq64", "qac", 256, 2e-4, 0.05, 0.15),
    Recipe("afhq64-qac", "QAC |C| = 2^20 on AFHQv2 64x64, EDM's AFHQv2 settings", "afhqv2-64x64.zip",
           "afhq64", "qac", 256, 2e-4, 0.25, 0.15),
)}

_MODEL_KEYS = {f.name for f in dataclasses.fields(ModelConfig)}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; QACError listing the known ones otherwise."""
    if name not in RECIPES:
        raise QACError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


def _steps(images: float, batch: int) -> int:
    return max(1, math.ceil(images / batch))


def resolve_recipe(name: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The full :class:`TrainConfig` of recipe ``name`` with ``overrides`` (TrainConfig or ModelConfig field
    names, as the CLI passes them) applied on top; image-denominated schedules follow the final batch size.

    >>> cfg = resolve_recipe("cifar10-qac")
    >>> cfg.batch_size, cfg.steps, cfg.lr_warmup_steps, cfg.augment, cfg.model.levels ** cfg.model.code_dim
    (512, 390625, 19532, 0.12, 1048576)
    >>> resolve_recipe("cifar10-qac", {"batch_size": 256}).steps
    781250
    """
    r = get_recipe(name)
    over = dict(overrides or {})
    model_over = {k: over.pop(k) for k in list(over) if k in _MODEL_KEYS}
    model = ModelConfig(arch=r.arch, formulation="edm", cond=r.cond, levels=r.levels, code_dim=r.code_dim,
                        dropout=r.dropout)
    model = dataclasses.replace(model, **model_over)
    batch = int(over.get("batch_size", r.batch))
    base: dict[str, Any] = dict(
        data=r.data, model=model, batch_size=batch, lr=r.lr, steps=_steps(r.duration_img, batch),
        lr_warmup_steps=_steps(r.lr_rampup_img, batch), ema_halflife_img=r.ema_halflife_img,
        ema_rampup_ratio=r.ema_rampup_ratio, augment=r.augment, xflip=False,
        snapshot_every=_steps(r.snapshot_img, batch), grid_every=_steps(r.snapshot_img, batch),
        log_every=_steps(r.log_img, batch), recipe=r.name)
    unknown = set(over) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise QACError(f"unknown settings for recipe {name!r}: {', '.join(sorted(unknown))}")
    base.update(over)
    return TrainConfig(**base)
