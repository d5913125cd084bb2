"""MNIST and CIFAR-10 through torchvision, from files already on disk (never downloaded).

The root folder comes from ``root=`` or the ``QAC_DATA_ROOT`` environment variable and must hold
what ``torchvision.datasets.MNIST(root)`` / ``CIFAR10(root)`` expect (``MNIST/raw/...``,
``cifar-10-batches-py/``). Training splits only; MNIST stays 28×28 unless ``resolution=`` is given.
"""

from __future__ import annotations

import os

import numpy as np

from qac.data.base import (
    ArrayDataset,
    check_resolution,
    image_dataset_from_nhwc,
    resize_uint8,
    subset_indices,
)
from qac.errors import QACError

_CLASSES = {"mnist": "MNIST", "cifar10": "CIFAR10"}


def open_torchvision(source: str, *, resolution: int | None = None, max_items: int | None = None,
                     seed: int = 0, root: str | None = None) -> ArrayDataset:
    """``"mnist"`` or ``"cifar10"`` (training split) from a local torchvision root."""
    check_resolution(resolution)
    root = root or os.environ.get("QAC_DATA_ROOT")
    how = (f"put the torchvision {_CLASSES[source]} files under a folder and pass root= or set "
           "QAC_DATA_ROOT (qac never downloads), or convert them to a folder/zip/npz")
    try:
        import torchvision.datasets as tvd
    except ImportError as exc:
        raise QACError(f"data set {source!r} needs torchvision (pip install torchvision); {how}") from exc
    if not root:
        raise QACError(f"data set {source!r} needs a data root: {how}")
    try:
        ds = getattr(tvd, _CLASSES[source])(root, train=True, download=False)
    except (RuntimeError, OSError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise QACError(f"{_CLASSES[source]} not found under {root}: {first_line}; {how}") from exc
    data = np.asarray(ds.data, dtype=np.uint8)
    labels = np.asarray(ds.targets, dtype=np.int64)
    if data.ndim == 3:
        data = data[..., None]
    keep = subset_indices(len(data), max_items, seed)
    data, labels = data[keep], labels[keep]
    if resolution is not None:
        data = resize_uint8(data, resolution)
    return image_dataset_from_nhwc(data, labels, source)
