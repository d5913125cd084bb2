"""EDM's EMA schedule, shared by the parameters and the online code weights (paper Alg. 1, lines 11-13)."""

from __future__ import annotations

import torch
from torch import nn


def ema_beta(nimg: float, batch_size: int, halflife_img: float, rampup_ratio: float | None) -> float:
    """EMA decay mu for one step: mu = 0.5 ** (batch / h), h = min(halflife, rampup * nimg) (EDM).

    ``nimg`` counts images seen *before* this step, so the first step has mu = 0 (EMA = net).

    >>> ema_beta(0, 64, 500_000, 0.05)
    0.0
    >>> round(ema_beta(10**9, 500_000, 500_000, 0.05), 6)
    0.5
    """
    h = halflife_img
    if rampup_ratio is not None:
        h = min(h, nimg * rampup_ratio)
    return 0.5 ** (batch_size / max(h, 1e-8))


@torch.no_grad()
def update_ema(ema: nn.Module, net: nn.Module, beta: float) -> None:
    """p_ema <- beta * p_ema + (1 - beta) * p_net for every parameter; buffers are copied."""
    for p_ema, p_net in zip(ema.parameters(), net.parameters(), strict=True):
        p_ema.lerp_(p_net.detach(), 1.0 - beta)
    for b_ema, b_net in zip(ema.buffers(), net.buffers(), strict=True):
        b_ema.copy_(b_net)
