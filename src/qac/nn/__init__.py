"""Backbones F (docs/design.md §2): the DDPM++ U-Net, the toy MLP, and their shared embeddings.

Every backbone has ``forward(x, c_noise, code=None)`` returning a tensor shaped like ``x`` and an attribute
``code_dim``; with ``code_dim > 0`` it owns the QAC code-embedding MLP whose output is added to the noise
embedding (paper §3.2).
"""

from qac.nn.blocks import UNetBlock, group_norm, num_groups
from qac.nn.embeddings import CodeEmbedding, PositionalEmbedding
from qac.nn.mlp import MLPConfig, MLPDenoiser
from qac.nn.registry import (
    BACKBONES,
    CONFIG_TYPES,
    build_backbone,
    config_from_dict,
    config_to_dict,
    count_params,
)
from qac.nn.unet import UNET_PRESETS, UNet, UNetConfig, unet_preset

__all__ = [
    "BACKBONES",
    "CONFIG_TYPES",
    "CodeEmbedding",
    "MLPConfig",
    "MLPDenoiser",
    "PositionalEmbedding",
    "UNET_PRESETS",
    "UNet",
    "UNetBlock",
    "UNetConfig",
    "build_backbone",
    "config_from_dict",
    "config_to_dict",
    "count_params",
    "group_norm",
    "num_groups",
    "unet_preset",
]
