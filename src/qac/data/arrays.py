"""Images (or points) stored as one NumPy array in an ``.npz`` or ``.npy`` file.

* Images: ``uint8`` of shape ``(N, H, W)`` (grayscale) or ``(N, H, W, C)`` with C in {1, 3}, under
  key ``x``, ``images`` or ``arr_0`` (the first one present); optional integer labels ``(N,)``
  under ``y`` or ``labels``. Images must be square unless ``resolution=`` is given.
* Points: a floating array ``(N, D)`` is read as a point set (``float32``), e.g. saved toy samples.

>>> import tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "a.npz")
>>> np.savez(p, x=np.zeros((2, 4, 4), np.uint8), y=np.array([0, 1]))
>>> ds = open_npz(p); tuple(ds.data.shape), ds.labels.tolist()
((2, 1, 4, 4), [0, 1])
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from qac.data.base import (
    ArrayDataset,
    check_resolution,
    image_dataset_from_nhwc,
    resize_uint8,
    subset_indices,
)
from qac.errors import QACError

DATA_KEYS = ("x", "images", "arr_0")
LABEL_KEYS = ("y", "labels")


def _load_arrays(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        if path.lower().endswith(".npy"):
            return np.load(path, allow_pickle=False), None
        with np.load(path, allow_pickle=False) as npz:
            key = next((k for k in DATA_KEYS if k in npz.files), None)
            if key is None:
                raise QACError(f"{path} has no image array: expected one of the keys {', '.join(DATA_KEYS)}"
                               f" (found {', '.join(npz.files) or 'none'})")
            lkey = next((k for k in LABEL_KEYS if k in npz.files), None)
            return npz[key], (None if lkey is None else npz[lkey])
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise QACError(f"cannot read array file {path}: {str(exc).splitlines()[0]}") from exc


def _check_labels(labels: np.ndarray | None, n: int, path: str) -> np.ndarray | None:
    if labels is None:
        return None
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise QACError(f"labels in {path} must be integers of shape ({n},), got {labels.dtype} "
                       f"{labels.shape}")
    if n and labels.min() < 0:
        raise QACError(f"labels in {path} must be non-negative")
    return labels.astype(np.int64)


def open_npz(path: str, *, resolution: int | None = None, max_items: int | None = None,
             seed: int = 0) -> ArrayDataset:
    """Read an ``.npz``/``.npy`` array file as an image (or point) :class:`ArrayDataset`."""
    check_resolution(resolution)
    data, labels = _load_arrays(path)
    name = Path(path).stem
    labels = _check_labels(labels, data.shape[0] if data.ndim else 0, path)
    if data.ndim == 2 and np.issubdtype(data.dtype, np.floating):
        if resolution is not None:
            raise QACError(f"{path} holds points {data.shape}; resolution= does not apply")
        keep = subset_indices(len(data), max_items, seed)
        lab = None if labels is None else torch.from_numpy(labels[keep])
        return ArrayDataset(torch.from_numpy(data[keep].astype(np.float32)), lab, "points", name)
    if data.ndim == 3:
        data = data[..., None]
    if data.ndim != 4 or data.shape[3] not in (1, 3):
        raise QACError(f"array in {path} has shape {data.shape}; need images (N, H, W) or (N, H, W, C) "
                       "with C = 1 or 3, or points (N, D) float")
    if data.dtype != np.uint8:
        raise QACError(f"images in {path} are {data.dtype}; need uint8 (0..255)")
    if data.shape[0] == 0:
        raise QACError(f"array file {path} holds no images")
    keep = subset_indices(len(data), max_items, seed)
    data = data[keep]
    labels = None if labels is None else labels[keep]
    if resolution is not None:
        data = resize_uint8(data, resolution)
    elif data.shape[1] != data.shape[2]:
        raise QACError(f"images in {path} are {data.shape[2]}x{data.shape[1]}, not square; pass resolution=")
    return image_dataset_from_nhwc(data, labels, name)
