"""Build a backbone from its config (a registry keyed by config type) and count parameters."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from qac.nn.mlp import MLPConfig, MLPDenoiser
from qac.nn.unet import UNet, UNetConfig

__all__ = ["BACKBONES", "build_backbone", "count_params"]

BACKBONES: dict[type, Callable[..., nn.Module]] = {
    UNetConfig: UNet,
    MLPConfig: MLPDenoiser,
}


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
