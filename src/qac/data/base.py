"""The in-memory dataset every source is turned into, plus small shared helpers.

An :class:`ArrayDataset` holds the whole data set as one tensor (docs/design.md §0):

* images: ``uint8 [N, C, H, W]`` with C in {1, 3}, H == W; :meth:`ArrayDataset.as_float` maps
  them to float32 in [-1, 1] by ``x / 127.5 - 1`` (0 -> -1, 255 -> 1 exactly);
* points: ``float32 [N, D]`` (the toy 2-D sets), returned unchanged by ``as_float``.

Every data set that qac trains on fits in memory (toys, digits, MNIST, CIFAR-10 at 150 MB uint8),
so one tensor is the simplest honest representation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from qac.errors import QACError
from qac.safeio import check_memory

Kind = Literal["image", "points"]


@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """A whole data set in one tensor, with optional integer labels.

    Attributes:
        data: ``uint8 [N, C, H, W]`` (``kind="image"``) or ``float32 [N, D]`` (``kind="points"``).
        labels: ``int64 [N]`` class labels, or ``None``.
        kind: ``"image"`` or ``"points"``.
        name: a short human-readable name (``"digits"``, ``"toy:moons"``, a file stem).

    >>> ds = ArrayDataset(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), None, "image", "blank")
    >>> len(ds), ds.shape, ds.num_channels, ds.resolution
    (4, (1, 8, 8), 1, 8)
    >>> float(ds.as_float().min())
    -1.0
    """

    data: torch.Tensor
    labels: torch.Tensor | None
    kind: Kind
    name: str

    def __post_init__(self) -> None:
        if self.kind == "image":
            if self.data.dtype != torch.uint8 or self.data.ndim != 4 or self.data.shape[1] not in (1, 3):
                raise ValueError(f"image data must be uint8 [N, 1|3, H, W], got {self.data.dtype} "
                                 f"{tuple(self.data.shape)}")
        elif self.kind == "points":
            if self.data.dtype != torch.float32 or self.data.ndim != 2:
                raise ValueError(f"point data must be float32 [N, D], got {self.data.dtype} "
                                 f"{tuple(self.data.shape)}")
        else:
            raise ValueError(f"kind must be 'image' or 'points', got {self.kind!r}")
        if self.labels is not None:
            if self.labels.dtype != torch.int64 or self.labels.shape != (self.data.shape[0],):
                raise ValueError(f"labels must be int64 [N={self.data.shape[0]}], got {self.labels.dtype} "
                                 f"{tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return int(self.data.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one item: ``(C, H, W)`` for images, ``(D,)`` for points."""
        return tuple(int(s) for s in self.data.shape[1:])

    @property
    def num_channels(self) -> int:
        """C for images; for points the feature width D (what a backbone sees as channels)."""
        return int(self.data.shape[1])

    @property
    def resolution(self) -> int | None:
        """Image side length H (= W); ``None`` for points."""
        return int(self.data.shape[2]) if self.kind == "image" else None

    @property
    def num_classes(self) -> int:
        """``max(label) + 1`` (EDM's label_dim), or 0 without labels."""
        if self.labels is None or len(self) == 0:
            return 0
        return int(self.labels.max()) + 1

    def as_float(self, index: torch.Tensor | slice | None = None) -> torch.Tensor:
        """Items as float32: images ``x / 127.5 - 1`` in [-1, 1]; points unchanged.

        ``index`` (a LongTensor or slice) converts only those items, e.g. one training batch.
        """
        data = self.data if index is None else self.data[index]
        if self.kind == "image":
            return data.to(torch.float32) / 127.5 - 1.0
        return data.to(torch.float32)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary: name, kind, N, item shape, label information."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "num_items": len(self),
                               "item_shape": list(self.shape), "labeled": self.labels is not None,
                               "num_classes": self.num_classes}
        if self.labels is not None:
            out["num_distinct_labels"] = int(torch.unique(self.labels).numel())
        return out


def subset_indices(n: int, max_items: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random subset of ``max_items`` out of ``n`` (all when it fits).

    Like EDM's ``max_size``: the subset depends only on ``(n, max_items, seed)``.
    """
    if max_items is None or max_items >= n:
        return np.arange(n)
    if max_items < 1:
        raise QACError(f"max_items must be >= 1, got {max_items}")
    perm = np.random.RandomState(seed).permutation(n)
    return np.sort(perm[:max_items])


def center_crop_resize(img: Image.Image, resolution: int) -> Image.Image:
    """Centre-crop a PIL image to a square (short side), then resize to ``resolution`` with Lanczos."""
    w, h = img.size
    if w != h:
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        img = img.crop((left, top, left + s, top + s))
    if img.size != (resolution, resolution):
        img = img.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return img


def check_image_memory(n: int, resolution: int | None, channels: int = 1) -> None:
    """QACError when ``n`` images of ``resolution``² x ``channels`` bytes cannot fit in the available memory."""
    if resolution is not None:
        check_memory(float(n) * resolution * resolution * channels, f"{n} images at --resolution {resolution}",
                     "choose a smaller --resolution or fewer items (--max-items)")


def check_finite(ds: ArrayDataset) -> ArrayDataset:
    """QACError when point data hold NaN/Inf (images are uint8, always finite); returns ``ds``."""
    if ds.data.is_floating_point():
        bad = int((~torch.isfinite(ds.data)).flatten(1).any(1).sum())
        if bad:
            raise QACError(f"data set {ds.name!r} holds NaN or Inf values in {bad} of {len(ds)} items; "
                           "remove or fix them before training")
    return ds


def resize_uint8(data: np.ndarray, resolution: int) -> np.ndarray:
    """Resize ``uint8 [N, H, W, C]`` (C in {1, 3}) to ``[N, r, r, C]`` via :func:`center_crop_resize`."""
    check_image_memory(data.shape[0], resolution, data.shape[3])
    out = np.empty((data.shape[0], resolution, resolution, data.shape[3]), dtype=np.uint8)
    for i, arr in enumerate(data):
        img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
        out[i] = np.asarray(center_crop_resize(img, resolution)).reshape(resolution, resolution, -1)
    return out


def check_resolution(resolution: int | None) -> None:
    """Reject non-positive resolutions with a :class:`QACError`."""
    if resolution is not None and (not isinstance(resolution, int) or resolution < 1):
        raise QACError(f"resolution must be a positive integer, got {resolution!r}")


def image_dataset_from_nhwc(data: np.ndarray, labels: np.ndarray | None, name: str) -> ArrayDataset:
    """Wrap ``uint8 [N, H, W, C]`` (+ optional int labels) as an image :class:`ArrayDataset`."""
    tensor = torch.from_numpy(np.ascontiguousarray(data.transpose(0, 3, 1, 2)))
    lab = None if labels is None else torch.as_tensor(np.asarray(labels, dtype=np.int64))
    return ArrayDataset(tensor, lab, "image", name)
