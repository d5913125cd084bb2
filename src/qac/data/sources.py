"""``open_dataset``: one string names any data source; a registry maps it to its loader.

Sources (tried in this order):

* ``toy:NAME[:N]`` — a toy 2-D set (:mod:`qac.data.toy`), N points generated from ``seed``;
* a registered name — ``digits``, ``digits16`` (scikit-learn, built in), ``mnist``, ``cifar10``
  (torchvision, only from files already on disk under ``root=`` or ``$QAC_DATA_ROOT``);
* a path — a folder of images, an EDM-style ``.zip``, or an ``.npz``/``.npy`` array file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from qac.data.arrays import open_npz
from qac.data.base import ArrayDataset, check_finite, check_resolution
from qac.data.digits import open_digits
from qac.data.images import open_image_folder, open_image_zip
from qac.data.toy import open_toy
from qac.data.vision import open_torchvision
from qac.errors import QACError

Loader = Callable[..., ArrayDataset]
"""``loader(source, *, resolution, max_items, seed, root, progress) -> ArrayDataset``."""


def _toy(source: str, *, resolution: int | None, max_items: int | None, seed: int, root: str | None,
         progress: bool) -> ArrayDataset:
    if resolution is not None:
        raise QACError(f"resolution= does not apply to the point data set {source!r}")
    return open_toy(source, max_items=max_items, seed=seed)


def _digits(source: str, *, resolution: int | None, max_items: int | None, seed: int, root: str | None,
            progress: bool) -> ArrayDataset:
    return open_digits(source, resolution=resolution, max_items=max_items, seed=seed)


def _torchvision(source: str, *, resolution: int | None, max_items: int | None, seed: int,
                 root: str | None, progress: bool) -> ArrayDataset:
    return open_torchvision(source, resolution=resolution, max_items=max_items, seed=seed, root=root)


def _npz(source: str, *, resolution: int | None, max_items: int | None, seed: int, root: str | None,
         progress: bool) -> ArrayDataset:
    return open_npz(source, resolution=resolution, max_items=max_items, seed=seed)


def _zip(source: str, *, resolution: int | None, max_items: int | None, seed: int, root: str | None,
         progress: bool) -> ArrayDataset:
    return open_image_zip(source, resolution=resolution, max_items=max_items, seed=seed, progress=progress)


def _folder(source: str, *, resolution: int | None, max_items: int | None, seed: int, root: str | None,
            progress: bool) -> ArrayDataset:
    return open_image_folder(source, resolution=resolution, max_items=max_items, seed=seed,
                             progress=progress)


NAMED_SOURCES: Mapping[str, Loader] = MappingProxyType({
    "digits": _digits,
    "digits16": _digits,
    "mnist": _torchvision,
    "cifar10": _torchvision,
})
"""Data sets known by name (no path)."""

FILE_LOADERS: Mapping[str, Loader] = MappingProxyType({".zip": _zip, ".npz": _npz, ".npy": _npz})
"""Loaders for files, by lower-case suffix; folders go to :func:`open_image_folder`."""


def open_dataset(source: str | os.PathLike[str], *, resolution: int | None = None,
                 max_items: int | None = None, seed: int = 0, root: str | os.PathLike[str] | None = None,
                 progress: bool = False) -> ArrayDataset:
    """Open any supported data source as an in-memory :class:`ArrayDataset`.

    Args:
        source: ``toy:NAME[:N]``, ``digits``, ``digits16``, ``mnist``, ``cifar10``, or a path to an
            image folder, an EDM-style ``.zip`` or an ``.npz``/``.npy`` file.
        resolution: resize images to ``resolution``² (centre-crop to square, then Lanczos).
        max_items: keep a seeded random subset of at most this many items (toy: cap N).
        seed: toy generation seed, and the seed of the ``max_items`` subset.
        root: folder holding torchvision data (``mnist``/``cifar10``); default ``$QAC_DATA_ROOT``.
        progress: show a tqdm bar while decoding image files.

    Returns images as ``uint8 [N, C, H, W]`` (C = 1 or 3) or points as ``float32 [N, D]``.
    Any bad input raises a one-line :class:`QACError` naming the offending file.

    >>> ds = open_dataset("toy:8gaussians:1000", seed=0)
    >>> ds.kind, tuple(ds.data.shape)
    ('points', (1000, 2))
    >>> open_dataset("digits16", max_items=10).shape
    (1, 16, 16)
    """
    return check_finite(_open(os.fspath(source), resolution, max_items, seed, root, progress))


def _open(source: str, resolution: int | None, max_items: int | None, seed: int,
          root: str | os.PathLike[str] | None, progress: bool) -> ArrayDataset:
    check_resolution(resolution)
    if max_items is not None and max_items < 1:
        raise QACError(f"max_items must be >= 1, got {max_items}")
    root_str = None if root is None else str(root)
    kwargs = dict(resolution=resolution, max_items=max_items, seed=seed, root=root_str, progress=progress)
    if source.startswith("toy:"):
        return _toy(source, **kwargs)
    if source in NAMED_SOURCES:
        return NAMED_SOURCES[source](source, **kwargs)
    path = Path(source).expanduser()
    if path.is_dir():
        return _folder(str(path), **kwargs)
    if not path.exists():
        names = ", ".join(sorted(NAMED_SOURCES))
        raise QACError(f"data source {source!r} not found: not a file or folder, not toy:NAME, "
                       f"and not one of {names}")
    loader = FILE_LOADERS.get(path.suffix.lower())
    if loader is None:
        kinds = ", ".join(sorted(FILE_LOADERS))
        raise QACError(f"cannot read data file {source!r}: expected a folder or a file ending in {kinds}")
    return loader(str(path), **kwargs)


__all__ = ["FILE_LOADERS", "NAMED_SOURCES", "open_dataset"]
