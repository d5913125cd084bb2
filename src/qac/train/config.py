"""Typed, frozen training configuration (resolved and saved as ``config.json`` in every run folder)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qac.conditions.fsq import PAPER_STE
from qac.errors import QACError
from qac.model import ModelConfig
from qac.safeio import read_json

MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; defaults train a small QAC model on scikit-learn digits.

    Schedules follow EDM: linear learning-rate warm-up over ``lr_warmup_steps`` steps, EMA half-life
    ``ema_halflife_img`` images with ramp-up ``ema_rampup_ratio`` (half-life <= ratio * images seen).
    Paper scale (``qac.train.step``): ``augment`` is EDM's augmentation probability p (CIFAR-10: 0.12),
    ``batch_gpu`` the rows per process and accumulation round (``None``: no accumulation), ``amp`` autocasts
    to ``amp_dtype`` (bf16, or fp16 with loss scaling; CUDA only), ``channels_last``/``compile`` are speed
    options, ``workers`` > 0 loads batches with a DataLoader (worker processes, pinned memory), and
    ``recipe`` records the recipe the run was made from (``qac.train.recipes``).
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
    amp_dtype: str = "bf16"
    augment: float = 0.0
    batch_gpu: int | None = None
    channels_last: bool = False
    compile: bool = False
    workers: int = 0
    recipe: str | None = None
    log_every: int = 50
    snapshot_every: int = 500
    grid_every: int = 500
    grid_size: int = 64
    grid_steps: int = 10

    def validate(self) -> TrainConfig:
        """Raise :class:`QACError` on impossible settings; return self."""
        self.model.validate()
        checks = [
            (0 <= self.seed <= MAX_SEED, f"seed must be in [0, 2^63 - 1], got {self.seed}"),
            (self.resolution is None or self.resolution >= 1, f"resolution must be >= 1, got {self.resolution}"),
            (self.max_items is None or self.max_items >= 1, f"max items must be >= 1, got {self.max_items}"),
            (self.steps >= 1, "steps must be >= 1"),
            (self.batch_size >= 1, "batch size must be >= 1"),
            (self.lr > 0, "learning rate must be > 0"),
            (self.lr_warmup_steps >= 0, "lr warm-up must be >= 0"),
            (self.ema_halflife_img > 0, "EMA half-life must be > 0"),
            (min(self.log_every, self.snapshot_every, self.grid_every) >= 1, "intervals must be >= 1"),
            (self.grid_size >= 1 and self.grid_steps >= 1, "grid size and steps must be >= 1"),
            (0.0 <= self.augment <= 1.0, f"--augment must be in [0, 1], got {self.augment}"),
            (self.batch_gpu is None or self.batch_gpu >= 1, "--batch-gpu must be >= 1"),
            (self.amp_dtype in ("bf16", "fp16"), f"amp dtype must be bf16 or fp16, got {self.amp_dtype!r}"),
            (self.workers >= 0, "--workers must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise QACError(msg)
        return self

    def to_dict(self) -> dict[str, Any]:
        """The config as a nested plain dict (what ``config.json`` holds)."""
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`to_dict` output; :class:`QACError` for unknown keys. A ``model`` section without
        ``ste`` (written before the option existed) gets the paper's straight-through gradient, ``PAPER_STE``.
        """
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
        """A copy with ``changes`` applied (``dataclasses.replace``; not validated again)."""
        return dataclasses.replace(self, **changes)


def load_config(path: str | Path) -> TrainConfig:
    """Read a ``config.json`` written by :func:`qac.train.train` (QACError naming the file if it is bad)."""
    path = Path(path)
    raw = read_json(path, "run config")
    if not isinstance(raw, dict) or not isinstance(raw.get("model", {}), dict):
        raise QACError(f"run config {path} is not a qac config.json (expected a JSON object with a model section)")
    try:
        return TrainConfig.from_dict(raw)
    except QACError as exc:
        raise QACError(f"run config {path}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise QACError(f"run config {path} is not a qac config.json ({exc})") from None
