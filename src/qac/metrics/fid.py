"""FID pipeline: images -> detector features -> :class:`FeatureStats` -> Fréchet distance (docs/design.md §5).

Works for any :class:`~qac.metrics.detectors.Detector`: the Inception detectors give FID, the proxy
detectors of :mod:`qac.metrics.proxies` give ``proxy_*`` distances with the same machinery.

EDM protocol (what published few-step numbers use): 50,000 generated images from seeds 0–49999 against
reference statistics of the whole training set, NVIDIA detector, resize inside the detector.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Any

import torch
from tqdm.auto import tqdm

from qac.errors import QACError
from qac.metrics.detectors import NVIDIA_SHA256, Detector
from qac.metrics.frechet import FIDResult, check_sample_size, frechet_distance, kid
from qac.metrics.stats import FeatureStats, Reference

PUBLISHED_N = 50_000


def compute_stats(batches: Iterable[torch.Tensor], detector: Detector, *, max_items: int | None = None,
                  keep: int = 0, progress: bool = True, total: int | None = None) -> FeatureStats:
    """Accumulate detector features of image batches (uint8 0..255 or float [-1, 1], NCHW).

    Stops after ``max_items`` images. ``keep`` > 0 also keeps a reservoir of raw features (for KID).

    >>> from qac.metrics.proxies import PixelDetector
    >>> st = compute_stats([torch.zeros(4, 3, 8, 8)], PixelDetector(), progress=False)
    >>> st.n
    4
    """
    stats = FeatureStats(detector.dim, keep=keep)
    bar = tqdm(total=max_items or total, unit="img", disable=not progress, desc=detector.metric)
    with torch.no_grad():
        for images in batches:
            if max_items is not None:
                images = images[: max_items - stats.n]
            if images.shape[0] == 0:
                break
            stats.update(detector.features(images))
            bar.update(images.shape[0])
            if max_items is not None and stats.n >= max_items:
                break
    bar.close()
    return stats


def reference_meta(stats: FeatureStats, detector: Detector, dataset: str, **extra: Any) -> dict[str, Any]:
    """Metadata stored with reference statistics (see :func:`qac.metrics.stats.save_reference`)."""
    return {"n": stats.n, "metric": detector.metric, "detector_sha256": detector.sha256,
            "protocol": detector.protocol, "dataset": dataset, **extra}


def check_reference(ref: Reference, detector: Detector) -> None:
    """QACError when ``ref`` was made with another detector/protocol; a warning when it cannot tell."""
    meta = ref.meta
    if ref.mu.shape[0] != detector.dim:
        raise QACError(f"reference has {ref.mu.shape[0]}-d statistics, the detector gives {detector.dim}-d")
    if not meta:
        warnings.warn("reference statistics carry no metadata (made by another tool?): assuming they were "
                      f"computed with the same detector and protocol ({detector.protocol})", stacklevel=3)
        return
    for key, mine in (("detector_sha256", detector.sha256), ("protocol", detector.protocol),
                      ("metric", detector.metric)):
        if key in meta and meta[key] != mine:
            raise QACError(f"reference {key} {meta[key]!r} differs from this run's {mine!r}: "
                           f"recompute the reference with `qac fid ref`")


def fid_from_stats(stats: FeatureStats, ref: Reference, detector: Detector, *,
                   seeds: str | None = None, kid_subsets: int = 100) -> FIDResult:
    """Fréchet distance between generated ``stats`` and ``ref`` with full provenance.

    If ``stats`` kept features (``keep > 0``) and ``ref`` carries features too, KID (mean and std over
    ``kid_subsets`` subsets of up to 1000) is added to the result.

    >>> from qac.metrics.proxies import PixelDetector
    >>> det = PixelDetector()
    >>> st = compute_stats([torch.rand(8, 3, 4, 4) * 2 - 1], det, progress=False)
    >>> ref = Reference(st.mean(), st.cov(), {"n": 8})
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     abs(fid_from_stats(st, ref, det).value) < 1e-8
    True
    """
    check_reference(ref, detector)
    small = check_sample_size(stats.n, detector.metric)
    value = frechet_distance(stats.mean(), stats.cov(), ref.mu, ref.sigma)
    if not math.isfinite(value):
        raise QACError(f"the {detector.metric} value is {value}: the generated images gave non-finite features "
                       "(diverged or damaged weights?)")
    ref_sha = ref.meta.get("detector_sha256", NVIDIA_SHA256)
    comparable = (detector.metric == "fid" and detector.sha256 == NVIDIA_SHA256 and detector.protocol == "edm"
                  and stats.n >= PUBLISHED_N and ref_sha == NVIDIA_SHA256)
    kid_value = kid_std = None
    kept = stats.kept()
    if kept.shape[0] >= 2 and ref.features is not None and ref.features.shape[0] >= 2:
        name = "kid" if detector.metric == "fid" else f"{detector.metric}_kid"
        k = kid(kept, ref.features, subsets=kid_subsets, metric=name)
        kid_value, kid_std = k.value, k.std
    return FIDResult(value=value, n=stats.n, n_ref=ref.n, seeds=seeds, detector_sha256=detector.sha256,
                     protocol=detector.protocol, metric=detector.metric, small_sample=small,
                     comparable_to_published=comparable, kid=kid_value, kid_std=kid_std)


def fid_from_generator(batches: Iterable[torch.Tensor], detector: Detector, ref: Reference, *,
                       seeds: str | None = None, max_items: int | None = None, kid_keep: int = 0,
                       progress: bool = True) -> FIDResult:
    """FID of generated images (float in [-1, 1] or uint8, NCHW batches) against ``ref``.

    This is what ``qac fid calc`` calls: ``batches`` can be a generator that samples on the fly, so
    no image is written to disk. ``seeds`` is recorded as given (e.g. "0-49999"). ``kid_keep`` > 0 keeps
    that many generated features for KID (used when ``ref.features`` exists).

    >>> from qac.metrics.proxies import PixelDetector
    >>> det = PixelDetector()
    >>> st = compute_stats([torch.zeros(4, 3, 4, 4)], det, progress=False)
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     r = fid_from_generator([torch.zeros(4, 3, 4, 4)], det, Reference(st.mean(), st.cov()),
    ...                            progress=False)
    >>> r.metric, r.n
    ('proxy_pixel_fd', 4)
    """
    stats = compute_stats(batches, detector, max_items=max_items, keep=kid_keep, progress=progress)
    return fid_from_stats(stats, ref, detector, seeds=seeds)
