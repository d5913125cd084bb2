"""Build a backbone from its config (a registry keyed by config type) and count parameters."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import nn

from qac.errors import QACError
from qac.nn.mlp import MLPConfig, MLPDenoiser
from qac.nn.unet import UNet, UNetConfig

__all__ = [
    "BACKBONES", "CONFIG_TYPES", "build_backbone", "config_from_dict", "config_to_dict", "count_params",
]

BACKBONES: dict[type, Callable[..., nn.Module]] = {
    UNetConfig: UNet,
    MLPConfig: MLPDenoiser,
}

#: JSON names of the config types (for run folders / checkpoints).
CONFIG_TYPES: dict[str, type] = {"unet": UNetConfig, "mlp": MLPConfig}


def build_backbone(config: UNetConfig | MLPConfig) -> nn.Module:
    """The backbone F for ``config`` (a :class:`UNetConfig` or :class:`MLPConfig`).

    >>> build_backbone(MLPConfig(hidden=16)).code_dim
    0
    """
    try:
        cls = BACKBONES[type(config)]
    except KeyError:
        raise TypeError(f"no backbone registered for config type {type(config).__name__}") from None
    return cls(config)


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (works on the ``meta`` device).

    >>> count_params(nn.Linear(3, 2))
    8
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def config_to_dict(config: UNetConfig | MLPConfig) -> dict[str, Any]:
    """A JSON-ready dict of a backbone config with its ``"type"`` (``"unet"`` or ``"mlp"``).

    >>> config_to_dict(MLPConfig())["type"]
    'mlp'
    """
    names = {cls: name for name, cls in CONFIG_TYPES.items()}
    out = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}
    return {"type": names[type(config)], **out}


def config_from_dict(data: dict[str, Any]) -> UNetConfig | MLPConfig:
    """Inverse of :func:`config_to_dict`; raises :class:`QACError` for an unknown type or field.

    >>> config_from_dict(config_to_dict(MLPConfig(hidden=8))) == MLPConfig(hidden=8)
    True
    """
    fields = dict(data)
    kind = fields.pop("type", None)
    if kind not in CONFIG_TYPES:
        raise QACError(f"unknown backbone config type {kind!r}; expected one of {sorted(CONFIG_TYPES)}")
    try:
        return CONFIG_TYPES[kind](**fields)
    except TypeError as exc:
        raise QACError(f"bad {kind} backbone config: {exc}") from exc
