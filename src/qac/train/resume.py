"""Honest resume: a resumed run continues the saved configuration, changed only where that is safe.

``--resume`` may change run-time settings freely (``RUNTIME_FIELDS``: the total step count, the device,
mixed precision, accumulation, data workers, channels_last/compile and the reporting intervals). The
optimisation settings in ``OVERRIDABLE`` (learning rate,
warm-up, EMA half-life) change only when named with ``--override`` -- lowering the learning rate after a
divergence is the usual reason. Everything else (data, model, seed, batch size, ...) defines what is being
trained and is refused, instead of being silently ignored. A total ``--steps`` below the step the run has
reached is refused too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from qac.errors import QACError
from qac.train.config import TrainConfig

RUNTIME_FIELDS = frozenset({"steps", "device", "amp", "amp_dtype", "batch_gpu", "channels_last", "compile", "workers",
                            "log_every", "snapshot_every", "grid_every", "grid_size", "grid_steps"})
OVERRIDABLE: dict[str, str] = {"lr": "lr", "warmup": "lr_warmup_steps", "ema-halflife": "ema_halflife_img"}
OPTION_NAMES: dict[str, str] = {
    "batch_size": "--batch", "lr_warmup_steps": "--warmup", "ema_halflife_img": "--ema-halflife",
    "model.model_channels": "--channels", "ema_rampup_ratio": "ema_rampup_ratio",
}


def _option(name: str) -> str:
    return OPTION_NAMES.get(name, "--" + name.removeprefix("model.").replace("_", "-"))


def _flat(cfg: TrainConfig) -> dict[str, Any]:
    out = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "model"}
    out.update({f"model.{k}": v for k, v in dataclasses.asdict(cfg.model).items()})
    return out


def override_fields(names: Iterable[str]) -> set[str]:
    """Config fields named by ``--override`` values (``lr``, ``warmup``, ``ema-halflife``)."""
    fields = set()
    for name in names:
        key = name.strip().lower().replace("_", "-")
        if key not in OVERRIDABLE:
            raise QACError(f"--override {name!r}: only {', '.join(OVERRIDABLE)} can be overridden on resume")
        fields.add(OVERRIDABLE[key])
    return fields


def resume_config(saved: TrainConfig, requested: TrainConfig, current_step: int, run_dir: Path,
                  overrides: Iterable[str] = ()) -> TrainConfig:
    """``requested`` if it differs from ``saved`` only where allowed; QACError naming the first refused change."""
    allowed = RUNTIME_FIELDS | override_fields(overrides)
    if requested.model.augment_dim is None:  # "the preset's": the saved config holds the width it resolved to
        requested = dataclasses.replace(
            requested, model=dataclasses.replace(requested.model, augment_dim=saved.model.augment_dim))
    old, new = _flat(saved), _flat(requested)
    refused = [k for k in old if old[k] != new[k] and k not in allowed]
    if refused:
        k = refused[0]
        hint = (f"add --override {next(o for o, f in OVERRIDABLE.items() if f == k)} to change it"
                if k in OVERRIDABLE.values() else "start a new run with --out to change it")
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise QACError(f"--resume continues {run_dir} as saved: {_option(k)} {new[k]!r} differs from its "
                       f"{old[k]!r}{more}; {hint}")
    if requested.steps < current_step:
        raise QACError(f"--steps {requested.steps} is below the step {current_step} that {run_dir} has reached; "
                       f"give the new total (> {current_step})")
    return requested.validate()
