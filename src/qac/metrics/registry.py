"""Metric registry: name -> :class:`MetricSpec` (docs/design.md §5). Proxies are flagged and named ``proxy_*``.

Set metrics compare two sets directly (``fn(a, b) -> result``); Fréchet metrics are defined by a
detector factory and go through streaming statistics and reference files (:mod:`qac.metrics.fid`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qac.errors import QACError
from qac.metrics import proxies, toy


@dataclass(frozen=True)
class MetricSpec:
    """``domain`` is "image" or "points"; exactly one of ``fn`` (set metric) and ``detector``
    (Fréchet metric: a factory ``(seed) -> Detector``; None for FID itself, whose detector is a file)."""

    name: str
    is_proxy: bool
    domain: str
    fn: Callable[..., Any] | None = None
    detector: Callable[[int], Any] | None = None
    doc: str = ""


METRICS: dict[str, MetricSpec] = {
    "fid": MetricSpec("fid", False, "image", doc="Fréchet distance of TF Inception-v3 pool features"),
    "proxy_pixel_fd": MetricSpec("proxy_pixel_fd", True, "image", fn=proxies.proxy_pixel_fd,
                                 detector=lambda seed: proxies.PixelDetector(),
                                 doc="pixel-space Fréchet distance at 16x16 (not FID)"),
    "proxy_randconv_fd": MetricSpec("proxy_randconv_fd", True, "image", fn=proxies.proxy_randconv_fd,
                                    detector=lambda seed: proxies.RandConvDetector(seed),
                                    doc="Fréchet distance in a seeded random conv net (not FID)"),
    "proxy_swd": MetricSpec("proxy_swd", True, "image", fn=proxies.proxy_swd,
                            doc="sliced Wasserstein distance of Laplacian-pyramid patches (not FID)"),
    "energy_distance": MetricSpec("energy_distance", False, "points", fn=toy.energy_distance,
                                  doc="unbiased energy distance (primary toy metric)"),
    "w2": MetricSpec("w2", False, "points", fn=toy.w2_exact, doc="exact OT W2, <= 2048 points"),
    "mmd": MetricSpec("mmd", False, "points", fn=toy.mmd_rbf, doc="unbiased RBF MMD^2"),
}


def get_metric(name: str) -> MetricSpec:
    """Look a metric up by name; QACError listing the choices otherwise.

    >>> get_metric("proxy_swd").is_proxy
    True
    """
    try:
        return METRICS[name]
    except KeyError:
        raise QACError(f"unknown metric {name!r}; choose from {sorted(METRICS)}") from None


def proxy_detector(name: str, seed: int = 0) -> Any:
    """The detector of a Fréchet-type proxy (``pixel_fd`` or ``proxy_pixel_fd``, ``randconv_fd`` ...)."""
    full = name if name.startswith("proxy_") else f"proxy_{name}"
    spec = METRICS.get(full)
    if spec is None or spec.detector is None:
        choices = sorted(k for k, v in METRICS.items() if v.detector is not None)
        raise QACError(f"no Fréchet-type proxy {name!r}; choose from {choices}")
    return spec.detector(seed)
