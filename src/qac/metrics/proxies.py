"""Proxy image metrics for machines without an Inception file (docs/design.md §5). They are **not FID**.

Every name starts with ``proxy_`` and every result says so:

* ``proxy_pixel_fd``: Fréchet distance of pixels, average-pooled to at most 16×16 (sanity signal).
* ``proxy_randconv_fd``: Fréchet distance of pooled features of a fixed random conv net whose weights
  come from ``numpy.random.RandomState(seed)`` (a stream numpy keeps frozen), so one seed gives the same
  weights on every machine; the seed is part of the protocol string.
* ``proxy_swd``: sliced Wasserstein distance between random 7×7 patches of a Laplacian pyramid
  (ProGAN-style), seeded projections.

The two ``*_fd`` proxies are :class:`~qac.metrics.detectors.Detector` objects, so reference files,
streaming and ``fid_from_generator`` work for them unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from qac.errors import QACError
from qac.metrics.detectors import to_uint8
from qac.metrics.frechet import frechet_distance
from qac.metrics.stats import FeatureStats


def _as_float(images: torch.Tensor) -> torch.Tensor:
    """Images (uint8 or [-1, 1] float, 1 or 3 channels) -> float32 [-1, 1], 3 channels."""
    return to_uint8(images).float() / 127.5 - 1.0


@dataclass(frozen=True)
class PixelDetector:
    """Pixels average-pooled to ``size``×``size`` (smaller images: nearest-upsampled, which duplicates
    pixels), flattened: ``dim = 3·size²`` (768 at 16).

    >>> PixelDetector().features(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 768])
    """

    size: int = 16
    metric: str = "proxy_pixel_fd"

    @property
    def dim(self) -> int:
        """Feature width 3·size² (768 at the default size 16)."""
        return 3 * self.size * self.size

    @property
    def protocol(self) -> str:
        """``proxy_pixel_fd/avgpool=<size>``, written into reference files and results."""
        return f"proxy_pixel_fd/avgpool={self.size}"

    @property
    def sha256(self) -> str:
        """sha256 of :attr:`protocol` (there is no weight file): the detector's identity in reference files."""
        return hashlib.sha256(self.protocol.encode()).hexdigest()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Features ``[B, 3·size²]`` float32 of images (uint8 or [-1, 1] float, 1 or 3 channels) mapped to
        [-1, 1] RGB, adaptive-average-pooled to size×size (nearest-upsampled when a side is smaller), flattened.
        """
        x = _as_float(images)
        if min(x.shape[-2:]) < self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="nearest")
        elif x.shape[-2:] != (self.size, self.size):
            x = F.adaptive_avg_pool2d(x, self.size)
        return x.flatten(1)


def _randconv_weights(seed: int, widths: tuple[int, ...]) -> list[torch.Tensor]:
    rs = np.random.RandomState(seed)
    weights, c_in = [], 3
    for c_out in widths:
        fan_in = c_in * 9
        w = rs.standard_normal((c_out, c_in, 3, 3)) * np.sqrt(2.0 / fan_in)
        weights.append(torch.from_numpy(w.astype(np.float32)))
        c_in = c_out
    return weights


@dataclass(frozen=True, eq=False)
class RandConvDetector:
    """A seeded random conv net: images resized to 32×32, three 3×3 conv + ReLU layers (stride 1, 2, 2)
    with He-normal weights from ``RandomState(seed)``; features are the spatial means of every layer
    (``dim = sum(widths)``).

    >>> det = RandConvDetector(seed=0)
    >>> det.features(torch.zeros(2, 3, 32, 32)).shape, det.protocol
    (torch.Size([2, 224]), 'proxy_randconv_fd/seed=0/widths=32-64-128/res=32')
    """

    seed: int = 0
    widths: tuple[int, ...] = (32, 64, 128)
    resolution: int = 32
    metric: str = "proxy_randconv_fd"
    weights: list[torch.Tensor] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", _randconv_weights(self.seed, self.widths))

    @property
    def dim(self) -> int:
        """Feature width: the sum of ``widths`` (224 by default)."""
        return int(sum(self.widths))

    @property
    def protocol(self) -> str:
        """``proxy_randconv_fd/seed=<seed>/widths=<a-b-c>/res=<resolution>``, written into references and results."""
        widths = "-".join(map(str, self.widths))
        return f"proxy_randconv_fd/seed={self.seed}/widths={widths}/res={self.resolution}"

    @property
    def sha256(self) -> str:
        """sha256 of :attr:`protocol` and the conv weights' bytes: equal hashes give equal features."""
        h = hashlib.sha256(self.protocol.encode())
        for w in self.weights:
            h.update(w.numpy().tobytes())
        return h.hexdigest()

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Features ``[B, sum(widths)]`` float32: images (uint8 or [-1, 1] float) as [-1, 1] RGB, resized to
        ``resolution``² (bilinear, antialiased), one conv + ReLU per entry of ``widths`` (stride 1, then 2),
        and the spatial mean of every layer's output, concatenated.
        """
        x = _as_float(images)
        if x.shape[-2:] != (self.resolution, self.resolution):
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear",
                              align_corners=False, antialias=True)
        pooled = []
        for i, w in enumerate(self.weights):
            x = F.relu(F.conv2d(x, w.to(x.device), stride=1 if i == 0 else 2, padding=1))
            pooled.append(x.mean(dim=(2, 3)))
        return torch.cat(pooled, dim=1)


@dataclass(frozen=True)
class ProxyResult:
    """A proxy number; ``metric`` always starts with ``proxy_`` and it is never comparable to FID."""

    metric: str
    value: float
    n_a: int
    n_b: int
    protocol: str
    details: dict[str, float] = field(default_factory=dict)
    comparable_to_published: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (``comparable_to_published`` is always False)."""
        return asdict(self)


def _fd_between(images_a: torch.Tensor, images_b: torch.Tensor, det: PixelDetector | RandConvDetector,
                batch: int = 256) -> ProxyResult:
    stats = []
    for imgs in (images_a, images_b):
        st = FeatureStats(det.dim)
        for i in range(0, imgs.shape[0], batch):
            st.update(det.features(imgs[i:i + batch]))
        stats.append(st)
    value = frechet_distance(stats[0].mean(), stats[0].cov(), stats[1].mean(), stats[1].cov())
    return ProxyResult(det.metric, value, stats[0].n, stats[1].n, det.protocol)


def proxy_pixel_fd(images_a: torch.Tensor, images_b: torch.Tensor, size: int = 16) -> ProxyResult:
    """Pixel-space Fréchet distance (see :class:`PixelDetector`) between two image sets.

    >>> proxy_pixel_fd(torch.zeros(8, 3, 16, 16), torch.rand(8, 3, 16, 16)).metric
    'proxy_pixel_fd'
    """
    return _fd_between(images_a, images_b, PixelDetector(size))


def proxy_randconv_fd(images_a: torch.Tensor, images_b: torch.Tensor, seed: int = 0) -> ProxyResult:
    """Fréchet distance in the seeded random conv net :class:`RandConvDetector`."""
    return _fd_between(images_a, images_b, RandConvDetector(seed))


def _laplacian_pyramid(x: torch.Tensor, min_size: int) -> list[torch.Tensor]:
    levels = []
    while x.shape[-1] >= 2 * min_size:
        small = F.avg_pool2d(x, 2)
        levels.append(x - F.interpolate(small, scale_factor=2.0, mode="nearest"))
        x = small
    levels.append(x)
    return levels


def _patch_positions(b: int, h: int, w: int, count: int, size: int,
                     gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    rows = torch.randint(0, h - size + 1, (b, count), generator=gen)
    cols = torch.randint(0, w - size + 1, (b, count), generator=gen)
    return rows, cols


def _random_patches(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, size: int) -> torch.Tensor:
    """Patches at ``rows``/``cols`` ``[B, count]`` (top-left corners), flattened: ``[B·count, C·size²]``."""
    b, count = rows.shape
    offs = torch.arange(size)
    ri = (rows[..., None] + offs)[..., :, None].expand(b, count, size, size)
    ci = (cols[..., None] + offs)[..., None, :].expand(b, count, size, size)
    bi = torch.arange(b)[:, None, None, None].expand_as(ri)
    patches = x.permute(0, 2, 3, 1)[bi, ri, ci]  # [B, count, size, size, C]
    return patches.reshape(b * count, -1)


def _sliced_w1(a: torch.Tensor, b: torch.Tensor, projections: int, gen: torch.Generator) -> float:
    dirs = torch.randn(a.shape[1], projections, generator=gen, dtype=torch.float64)
    dirs /= dirs.norm(dim=0, keepdim=True)
    pa, _ = torch.sort(a.double() @ dirs, dim=0)
    pb, _ = torch.sort(b.double() @ dirs, dim=0)
    return float((pa - pb).abs().mean())


def proxy_swd(images_a: torch.Tensor, images_b: torch.Tensor, *, patches_per_image: int = 64,
              patch_size: int = 7, projections: int = 256, min_size: int = 8, seed: int = 0) -> ProxyResult:
    """Sliced Wasserstein-1 distance between random patches of Laplacian pyramid levels (×10³).

    Both sets give ``patches_per_image`` patches per image at the same seeded positions (the larger set is
    subsampled, seeded, to the size of the smaller one), so identical sets give exactly 0; descriptors are
    standardised per level with the mean/std of set ``b`` (so shifts in mean or contrast still count);
    each level's SWD averages ``projections`` random unit directions. The value is the mean over levels,
    times 1000 (per-level values in ``details``).

    >>> r = proxy_swd(torch.zeros(4, 3, 16, 16), torch.rand(4, 3, 16, 16) * 2 - 1)
    >>> r.metric, r.value > 0
    ('proxy_swd', True)
    """
    gen = torch.Generator().manual_seed(seed)
    a, b = _as_float(images_a), _as_float(images_b)
    if a.shape[1:] != b.shape[1:]:
        raise QACError(f"proxy_swd needs equal image shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    if min(a.shape[-2:]) < patch_size:
        raise QACError(f"proxy_swd needs images of at least {patch_size}px")
    n = min(a.shape[0], b.shape[0])
    a = a[torch.randperm(a.shape[0], generator=torch.Generator().manual_seed(seed))[:n]]
    b = b[torch.randperm(b.shape[0], generator=torch.Generator().manual_seed(seed))[:n]]
    details = {}
    for lev, (la, lb) in enumerate(zip(_laplacian_pyramid(a, max(min_size, patch_size)),
                                       _laplacian_pyramid(b, max(min_size, patch_size)))):
        rows, cols = _patch_positions(n, la.shape[-2], la.shape[-1], patches_per_image, patch_size, gen)
        da, db = _random_patches(la, rows, cols, patch_size), _random_patches(lb, rows, cols, patch_size)
        mean, std = db.mean(0, keepdim=True), db.std(0, keepdim=True).clamp_min(1e-8)
        details[f"level{lev}_{la.shape[-1]}px"] = 1e3 * _sliced_w1((da - mean) / std, (db - mean) / std,
                                                                   projections, gen)
    protocol = (f"proxy_swd/patch={patch_size}/per_image={patches_per_image}/proj={projections}"
                f"/seed={seed}")
    return ProxyResult("proxy_swd", float(np.mean(list(details.values()))), n, n, protocol, details)
