"""scikit-learn's 8×8 handwritten digits: the built-in, download-free image data set.

``load_digits`` ships 1797 grayscale 8×8 images with values 0..16 and labels 0..9 inside the
scikit-learn wheel. We map values to uint8 by ``round(v · 255 / 16)`` (0 -> 0, 16 -> 255).

``digits16`` is the same set upsampled to 16×16 with PIL's bilinear filter on the uint8 images
(chosen over nearest so the U-Net does not learn 2×2 blocks; for upsampling, bilinear needs no
antialiasing). A ``resolution=`` argument resizes further with Lanczos, like every image source.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from qac.data.base import (
    ArrayDataset,
    check_resolution,
    image_dataset_from_nhwc,
    resize_uint8,
    subset_indices,
)


def digits_uint8() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits as ``uint8 [N, 8, 8]`` (``round(v·255/16)``) and ``int64 [N]`` labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return images, bunch.target.astype(np.int64)


def _upsample_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BILINEAR))
                     for im in images])


def open_digits(source: str = "digits", *, resolution: int | None = None, max_items: int | None = None,
                seed: int = 0) -> ArrayDataset:
    """``"digits"`` (1×8×8) or ``"digits16"`` (1×16×16, bilinear) as an image :class:`ArrayDataset`.

    ``max_items`` takes a seeded random subset (sorted indices); labels are the digit classes.

    >>> ds = open_digits("digits")
    >>> tuple(ds.data.shape), ds.num_classes
    ((1797, 1, 8, 8), 10)
    """
    check_resolution(resolution)
    images, labels = digits_uint8()
    keep = subset_indices(len(images), max_items, seed)
    images, labels = images[keep], labels[keep]
    if source == "digits16":
        images = _upsample_bilinear(images, 16)
    elif source != "digits":
        raise ValueError(f"open_digits handles 'digits' and 'digits16', not {source!r}")
    nhwc = images[..., None]
    if resolution is not None and resolution != nhwc.shape[1]:
        nhwc = resize_uint8(nhwc, resolution)
    return image_dataset_from_nhwc(nhwc, labels, source)
