"""Data augmentation for training batches."""

from __future__ import annotations

import torch


def xflip(batch: torch.Tensor, generator: torch.Generator | None = None, p: float = 0.5) -> torch.Tensor:
    """Flip each image of ``batch [B, C, H, W]`` left-right with probability ``p``, per sample.

    The coin flips are drawn on the generator's device (CPU by default) and moved to the batch,
    so a seeded CPU generator gives the same flips on every device. Returns a new tensor.

    >>> from qac.util import seed_generator
    >>> x = torch.arange(4.).reshape(1, 1, 1, 4)
    >>> xflip(x, seed_generator(0), p=1.0).flatten().tolist()
    [3.0, 2.0, 1.0, 0.0]
    """
    if batch.ndim != 4:
        raise ValueError(f"xflip expects images [B, C, H, W], got shape {tuple(batch.shape)}")
    device = generator.device if generator is not None else torch.device("cpu")
    flip = torch.rand(batch.shape[0], generator=generator, device=device) < p
    flip = flip.to(batch.device)[:, None, None, None]
    return torch.where(flip, batch.flip(-1), batch)
