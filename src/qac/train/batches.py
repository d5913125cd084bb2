"""Where training batches come from: the in-memory data set, or a DataLoader with worker processes.

With ``workers = 0`` the loop indexes the in-memory :class:`~qac.data.ArrayDataset` itself. With ``workers > 0``
a ``torch.utils.data.DataLoader`` prepares whole per-step batches (this process's share, uint8) in worker
processes, ``prefetch_factor`` steps ahead, in pinned memory on CUDA, so decoding never stalls the GPU; an
image folder or ``.zip`` is then read lazily (:class:`qac.data.lazy.FileImages`) instead of loaded at start.
Both paths give the same items in the same order (:func:`qac.train.step.batch_indices`), so they train
identically and resume bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from qac.data import open_dataset
from qac.data.lazy import FileImages
from qac.train.config import TrainConfig
from qac.train.distributed import DistInfo
from qac.train.step import batch_indices


def open_training_data(cfg: TrainConfig) -> Any:
    """The in-memory data set, or a lazy :class:`FileImages` for a folder/zip when ``cfg.workers > 0``."""
    path = Path(cfg.data).expanduser()
    if cfg.workers > 0 and (path.is_dir() or path.suffix.lower() == ".zip"):
        return FileImages(str(path), resolution=cfg.resolution, max_items=cfg.max_items, seed=cfg.seed)
    return open_dataset(cfg.data, resolution=cfg.resolution, max_items=cfg.max_items, seed=cfg.seed)


class _StepBatches(Dataset):
    """Item i = this process's share of the global batch of step ``start + i``."""

    def __init__(self, data: Any, cfg: TrainConfig, info: DistInfo, start: int) -> None:
        self.data, self.cfg, self.info, self.start = data, cfg, info, start

    def __len__(self) -> int:
        return max(self.cfg.steps - self.start, 0)

    def __getitem__(self, i: int) -> torch.Tensor:
        idx = batch_indices(self.start + i, self.cfg.batch_size, len(self.data), self.cfg.seed, self.info)
        return self.data.items(idx) if hasattr(self.data, "items") else self.data.data[idx]


def step_batches(data: Any, cfg: TrainConfig, info: DistInfo, start: int, device: torch.device) -> Iterator[Any]:
    """An iterator over the per-step batches from ``start`` on, prepared by ``cfg.workers`` processes."""
    loader = DataLoader(_StepBatches(data, cfg, info, start), batch_size=None, shuffle=False,
                        num_workers=cfg.workers, pin_memory=device.type == "cuda", prefetch_factor=2)
    return iter(loader)
