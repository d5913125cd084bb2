"""Sampling and FID across processes (``torchrun --nproc_per_node=K -m qac sample|fid calc|fid ref|sweep``).

Seeds (or data-set items) are split into contiguous blocks, one per rank (:func:`qac.train.distributed.shard`).
Sample k depends only on seed k, so the gathered samples are bit for bit those of one process. Fréchet
statistics are sums (count, Σf, Σffᵀ in float64, :class:`qac.metrics.stats.FeatureStats`): every rank's sums
are gathered and merged in rank order, so the distance equals one process's to rounding (≈1e-12).
"""

from __future__ import annotations

import torch

from qac.metrics.stats import FeatureStats
from qac.train.distributed import DistInfo, gather_objects


def merge_stats(stats: FeatureStats, info: DistInfo) -> FeatureStats:
    """The statistics of all ranks' features, identical on every rank (a no-op on one process)."""
    if not info.enabled:
        return stats
    state = {k: v.cpu() for k, v in stats.state_dict().items()} if stats.n else None
    parts = gather_objects((state, stats.kept()), info)
    total = FeatureStats(stats.dim, keep=stats.keep, seed=stats.seed)
    for part, kept in parts:
        if part is not None:
            total.merge(FeatureStats.from_state(part, keep=stats.keep, seed=stats.seed, kept=kept))
    return total


def gather_cat(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenate every rank's tensor (CPU) in rank order, on every rank."""
    if not info.enabled:
        return t
    return torch.cat([p for p in gather_objects(t.cpu(), info)])
