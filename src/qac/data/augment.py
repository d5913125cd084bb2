"""Data augmentation for training batches: EDM's non-leaky geometric pipeline (Karras et al. 2022, App. F.2).

Each op fires per image with probability ``min(multiplier * p, 1)``; an op that does not fire is the identity.
What was done is written into an augmentation label that the network receives through its augment embedding
(a bias-free linear layer added to the noise embedding, ``qac.nn.unet``); at sampling time the label is zero,
so the network generates un-augmented images ("non-leaky" conditioning). Ops, in the order they run and in
the order of the label (EDM's ``training/augment.py`` order):

==============  =====  ==========================================================================
op              label  definition (x right, y down; pixel-centre coordinates; content moves by the op)
==============  =====  ==========================================================================
xflip           1      w ∈ {0, 1}: mirror left-right when w = 1 (fires always at EDM's multiplier 1e8)
yflip           1      w ∈ {0, 1}: mirror top-bottom
rotate_int      2      k ∈ {0..3}: rotate by k·90° (exact, ``torch.rot90``); label (cos − 1, sin) of k·90°
translate_int   2      w ∈ U(−1, 1)²: shift by round(w·max·size) pixels with mirrored borders; label shift/(max·size)
scale           1      w ~ N(0, 1): isotropic scale 2^(w·scale_std); label w
rotate_frac     2      θ ~ U(−π, π)·rotate_frac_max: rotation by θ; label (cos θ − 1, sin θ)
aniso           2      w ~ N(0, 1), r: scale 2^(w·aniso_std) along direction r, 1/that across; label (w cos r, w sin r)
translate_frac  2      w ~ N(0, 1)²: shift by w·translate_frac_std·size pixels; label w
==============  =====  ==========================================================================

The first four move whole pixels ("blitting", exact). The last four compose one affine map per image, applied
as EDM does: mirror padding, 2× upsampling with the sym6 wavelet, bilinear resampling, wavelet downsampling
(an orthogonal filter pair, so the identity map reproduces the image to float precision).

Parameters are drawn apart from their application (:func:`draw_augment`, :func:`apply_augment`): the training
loop draws them once per step for the whole global batch from a seeded generator and gives each process and
accumulation round its rows, so image j of step s is augmented the same way whatever the number of processes,
the accumulation and a resume in between.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
from torch import Tensor
from torch.nn import functional as F

from qac.errors import QACError

# Orthonormal sym6 low-pass filter (Daubechies' least-asymmetric wavelet with 6 vanishing moments).
SYM6 = (0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
        0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
        -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148)


@dataclass(frozen=True)
class AugmentConfig:
    """Probability ``p`` and per-op multipliers/strengths; the defaults are EDM's CIFAR-10 settings
    (``train.py --augment=0.12``: xflip 1e8, yflip, scale, rotate_frac, aniso, translate_frac at 1)."""

    p: float = 0.12
    xflip: float = 1e8
    yflip: float = 1.0
    rotate_int: float = 0.0
    translate_int: float = 0.0
    scale: float = 1.0
    rotate_frac: float = 1.0
    aniso: float = 1.0
    translate_frac: float = 1.0
    translate_int_max: float = 0.125
    scale_std: float = 0.2
    rotate_frac_max: float = 1.0
    aniso_std: float = 0.2
    aniso_rotate_prob: float = 0.5
    translate_frac_std: float = 0.125

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise QACError(f"augmentation probability must be in [0, 1], got {self.p}")
        if any(getattr(self, f.name) < 0 for f in fields(self)):
            raise QACError("augmentation multipliers and strengths must be >= 0")

    @property
    def label_dim(self) -> int:
        """Width of the augmentation label (9 for the defaults); it does not depend on ``p``."""
        return sum(op.label_dim for op in OPS if getattr(self, op.name) > 0)


Params = dict[str, Tensor]


@dataclass(frozen=True)
class _Op:
    """One augmentation: draw its per-image parameters, label them, and either move pixels (``blit``) or
    give the inverse affine map (``inverse``, [N, 3, 3]: output pixel-centre coords -> input coords)."""

    name: str
    label_dim: int
    draw: Callable[[int, float, AugmentConfig, torch.Generator], Tensor]
    label: Callable[[Tensor], Tensor]
    blit: Callable[[Tensor, Tensor, AugmentConfig], Tensor] | None = None
    inverse: Callable[[Tensor, AugmentConfig, int, int], Tensor] | None = None


def _gate(n: int, prob: float, gen: torch.Generator) -> Tensor:
    return torch.rand(n, generator=gen) < prob


def _draw_int(high: int) -> Callable[[int, float, AugmentConfig, torch.Generator], Tensor]:
    def draw(n: int, prob: float, cfg: AugmentConfig, gen: torch.Generator) -> Tensor:
        w = torch.randint(high, (n,), generator=gen).float()
        return torch.where(_gate(n, prob, gen), w, torch.zeros_like(w))[:, None]
    return draw


def _draw_uniform2(n: int, prob: float, cfg: AugmentConfig, gen: torch.Generator) -> Tensor:
    w = torch.rand(n, 2, generator=gen) * 2 - 1
    return torch.where(_gate(n, prob, gen)[:, None], w, torch.zeros_like(w))


def _draw_normal(k: int) -> Callable[[int, float, AugmentConfig, torch.Generator], Tensor]:
    def draw(n: int, prob: float, cfg: AugmentConfig, gen: torch.Generator) -> Tensor:
        w = torch.randn(n, k, generator=gen)
        return torch.where(_gate(n, prob, gen)[:, None], w, torch.zeros_like(w))
    return draw


def _draw_rotation(n: int, prob: float, cfg: AugmentConfig, gen: torch.Generator) -> Tensor:
    theta = (torch.rand(n, generator=gen) * 2 - 1) * (math.pi * cfg.rotate_frac_max)
    return torch.where(_gate(n, prob, gen), theta, torch.zeros_like(theta))[:, None]


def _draw_aniso(n: int, prob: float, cfg: AugmentConfig, gen: torch.Generator) -> Tensor:
    w = torch.randn(n, generator=gen)
    r = (torch.rand(n, generator=gen) * 2 - 1) * math.pi
    fired = _gate(n, prob, gen)
    w = torch.where(fired, w, torch.zeros_like(w))
    r = torch.where(_gate(n, cfg.aniso_rotate_prob, gen) & fired, r, torch.zeros_like(r))
    return torch.stack([w, r], dim=1)


def _rot90_label(k: Tensor) -> Tensor:
    angle = k[:, 0] * (math.pi / 2)
    return torch.stack([angle.cos().round() - 1, angle.sin().round()], dim=1)


def _blit_flip(dim: int) -> Callable[[Tensor, Tensor, AugmentConfig], Tensor]:
    def blit(x: Tensor, w: Tensor, cfg: AugmentConfig) -> Tensor:
        return torch.where(w[:, 0].bool().to(x.device)[:, None, None, None], x.flip(dim), x)
    return blit


def _blit_rot90(x: Tensor, k: Tensor, cfg: AugmentConfig) -> Tensor:
    if x.shape[2] != x.shape[3]:
        raise QACError("90-degree rotations need square images")
    k = k[:, 0].long().to(x.device)[:, None, None, None]
    out = x
    for turns in (1, 2, 3):  # content turns by +90° (x towards y) per step: rot90 with k = -turns
        out = torch.where(k == turns, torch.rot90(x, -turns, dims=(2, 3)), out)
    return out


def _int_shift(cfg: AugmentConfig, w: Tensor, h: int, wd: int) -> tuple[Tensor, Tensor]:
    return (w[:, 0] * (wd * cfg.translate_int_max)).round(), (w[:, 1] * (h * cfg.translate_int_max)).round()


def _mirror(i: Tensor, n: int) -> Tensor:
    """Fold any integer index into [0, n) by mirroring at the borders (no repeated edge pixel)."""
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * n - 2
    return n - 1 - (n - 1 - i.remainder(period)).abs()


def _blit_translate(x: Tensor, w: Tensor, cfg: AugmentConfig) -> Tensor:
    n, c, h, wd = x.shape
    tx, ty = (t.long().to(x.device) for t in _int_shift(cfg, w, h, wd))
    ys = _mirror(torch.arange(h, device=x.device)[None, :] - ty[:, None], h)  # [N, H]
    xs = _mirror(torch.arange(wd, device=x.device)[None, :] - tx[:, None], wd)  # [N, W]
    rows = x.gather(2, ys[:, None, :, None].expand(n, c, h, wd))
    return rows.gather(3, xs[:, None, None, :].expand(n, c, h, wd))


def _mat(n: int, entries: list[list[Tensor | float]]) -> Tensor:
    rows = [torch.stack([torch.as_tensor(e, dtype=torch.float64).expand(n) for e in row], dim=1)
            for row in entries]
    return torch.stack(rows, dim=1)


def _rotation(theta: Tensor) -> Tensor:
    c, s = theta.cos(), theta.sin()
    return _mat(len(theta), [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _scaling(sx: Tensor, sy: Tensor) -> Tensor:
    return _mat(len(sx), [[sx, 0.0, 0.0], [0.0, sy, 0.0], [0.0, 0.0, 1.0]])


def _inv_scale(w: Tensor, cfg: AugmentConfig, h: int, wd: int) -> Tensor:
    s = torch.exp2(w[:, 0].double() * cfg.scale_std)
    return _scaling(1 / s, 1 / s)


def _inv_rotate(theta: Tensor, cfg: AugmentConfig, h: int, wd: int) -> Tensor:
    return _rotation(-theta[:, 0].double())


def _inv_aniso(wr: Tensor, cfg: AugmentConfig, h: int, wd: int) -> Tensor:
    s = torch.exp2(wr[:, 0].double() * cfg.aniso_std)
    r = wr[:, 1].double()
    return _rotation(r) @ _scaling(1 / s, s) @ _rotation(-r)


def _inv_translate(w: Tensor, cfg: AugmentConfig, h: int, wd: int) -> Tensor:
    tx, ty = w[:, 0].double() * (wd * cfg.translate_frac_std), w[:, 1].double() * (h * cfg.translate_frac_std)
    return _mat(len(w), [[1.0, 0.0, -tx], [0.0, 1.0, -ty], [0.0, 0.0, 1.0]])


OPS: tuple[_Op, ...] = (
    _Op("xflip", 1, _draw_int(2), lambda w: w, blit=_blit_flip(3)),
    _Op("yflip", 1, _draw_int(2), lambda w: w, blit=_blit_flip(2)),
    _Op("rotate_int", 2, _draw_int(4), _rot90_label, blit=_blit_rot90),
    _Op("translate_int", 2, _draw_uniform2, lambda w: w, blit=_blit_translate),
    _Op("scale", 1, _draw_normal(1), lambda w: w, inverse=_inv_scale),
    _Op("rotate_frac", 2, _draw_rotation, lambda t: torch.cat([t.cos() - 1, t.sin()], dim=1), inverse=_inv_rotate),
    _Op("aniso", 2, _draw_aniso, lambda wr: torch.stack([wr[:, 0] * wr[:, 1].cos(), wr[:, 0] * wr[:, 1].sin()],
                                                        dim=1), inverse=_inv_aniso),
    _Op("translate_frac", 2, _draw_normal(2), lambda w: w, inverse=_inv_translate),
)
"""The ops in application and label order (a registry: add an op here and it is drawn, applied, labelled)."""


def _enabled(cfg: AugmentConfig) -> list[_Op]:
    return [op for op in OPS if getattr(cfg, op.name) > 0]


def draw_augment(cfg: AugmentConfig, n: int, generator: torch.Generator) -> Params:
    """Per-image parameters of every enabled op for ``n`` images, drawn from a CPU ``generator``.

    The draws happen even for ``p = 0`` (every gate then says no), so the stream of random numbers does not
    depend on ``p``.
    """
    return {op.name: op.draw(n, min(getattr(cfg, op.name) * cfg.p, 1.0), cfg, generator) for op in _enabled(cfg)}


def slice_params(params: Params, rows: Tensor | slice) -> Params:
    """The parameters of a subset of the images (one process's or one accumulation round's share)."""
    return {k: v[rows] for k, v in params.items()}


def augment_labels(cfg: AugmentConfig, params: Params, size: tuple[int, int]) -> Tensor:
    """The ``[N, label_dim]`` float32 label of what :func:`apply_augment` does with ``params``."""
    parts = []
    for op in _enabled(cfg):
        w = params[op.name]
        if op.name == "translate_int":
            h, wd = size
            tx, ty = _int_shift(cfg, w, h, wd)
            parts.append(torch.stack([tx / (wd * cfg.translate_int_max), ty / (h * cfg.translate_int_max)], dim=1))
        else:
            parts.append(op.label(w))
    if not parts:
        return torch.zeros(next(iter(params.values())).shape[0] if params else 0, 0)
    return torch.cat([p.to(torch.float32).reshape(p.shape[0], -1) for p in parts], dim=1)


def apply_augment(images: Tensor, cfg: AugmentConfig, params: Params) -> Tensor:
    """Augment ``images [N, C, H, W]`` (float) with ``params`` from :func:`draw_augment`."""
    if images.ndim != 4:
        raise QACError(f"augmentation needs images [N, C, H, W], got shape {tuple(images.shape)}")
    n, _, h, w = images.shape
    inv = torch.eye(3, dtype=torch.float64).expand(n, 3, 3)
    geometric = False
    for op in _enabled(cfg):
        p = params[op.name]
        if not bool(p.ne(0).any()):
            continue  # no image of the batch drew this op
        if op.blit is not None:
            images = op.blit(images, p, cfg)
        else:
            inv = inv @ op.inverse(p, cfg, h, w)
            geometric = True
    return _resample(images, inv) if geometric else images


def _filter_pass(x: Tensor, taps: Tensor, dim: int, up: bool) -> Tensor:
    """One separable pass along ``dim`` (2 = rows, 3 = columns): 2× synthesis (zero-stuff, full convolution)
    or 2× analysis (correlation, stride 2). Analysis after synthesis is the identity (orthonormal taps)."""
    c = x.shape[1]
    length = taps.numel()
    shape = [1, 1, length, 1] if dim == 2 else [1, 1, 1, length]
    if up:
        stuffed = torch.stack([x, torch.zeros_like(x)], dim=dim + 1).flatten(dim, dim + 1)
        pad = [0, 0, length - 1, length - 1] if dim == 2 else [length - 1, length - 1, 0, 0]
        weight = taps.flip(0).reshape(shape).to(x).expand(c, -1, -1, -1)
        return F.conv2d(F.pad(stuffed, pad), weight, groups=c)
    stride = (2, 1) if dim == 2 else (1, 2)
    return F.conv2d(x, taps.reshape(shape).to(x).expand(c, -1, -1, -1), groups=c, stride=stride)


def _resample(images: Tensor, inv: Tensor) -> Tensor:
    """out(p) = in(inv · p) for pixel-centre coordinates p, with mirror padding and sym6 2× oversampling."""
    n, c, h, w = images.shape
    taps = torch.tensor(SYM6, dtype=torch.float64)
    delay = float((torch.arange(taps.numel()) * taps).sum() / taps.sum())  # DC group delay of the taps
    # an upsampled index k sits at padded pixel (k - delay) / 2
    # Output pixels read 3 px beyond the image (analysis taps), which read 3 px further in the input (synthesis).
    cx, cy = (w - 1) / 2 + 3, (h - 1) / 2 + 3
    corners = torch.tensor([[-cx, -cy, 1.0], [cx, -cy, 1.0], [cx, cy, 1.0], [-cx, cy, 1.0]], dtype=torch.float64)
    reach = (inv @ corners.T)[:, :2].abs()  # [N, 2, 4]
    need_x = float(reach[:, 0].max()) - (w - 1) / 2 + 4
    need_y = float(reach[:, 1].max()) - (h - 1) / 2 + 4
    mx = int(min(max(math.ceil(need_x), 0), w - 1))
    my = int(min(max(math.ceil(need_y), 0), h - 1))
    x = F.pad(images, [mx, mx, my, my], mode="reflect") if (mx or my) else images
    x = _filter_pass(_filter_pass(x, taps, 3, up=True), taps, 2, up=True)
    uh, uw = x.shape[2], x.shape[3]
    ky, kx = torch.meshgrid(torch.arange(uh, dtype=torch.float64), torch.arange(uw, dtype=torch.float64),
                            indexing="ij")
    px = (kx - delay) / 2 - mx - (w - 1) / 2  # output pixel-centre coordinates of each upsampled sample
    py = (ky - delay) / 2 - my - (h - 1) / 2
    pts = torch.stack([px.flatten(), py.flatten(), torch.ones(uh * uw, dtype=torch.float64)])  # [3, P]
    src = inv @ pts  # [N, 3, P]
    sx = 2 * (src[:, 0] + mx + (w - 1) / 2) + delay
    sy = 2 * (src[:, 1] + my + (h - 1) / 2) + delay
    grid = torch.stack([2 * sx / (uw - 1) - 1, 2 * sy / (uh - 1) - 1], dim=-1).reshape(n, uh, uw, 2)
    x = F.grid_sample(x, grid.to(x), mode="bilinear", padding_mode="zeros", align_corners=True)
    x = _filter_pass(_filter_pass(x, taps, 3, up=False), taps, 2, up=False)
    return x[:, :, my:my + h, mx:mx + w]


class AugmentPipe:
    """``pipe(images, generator) -> (augmented images, labels [N, label_dim])``; see the module docstring.

    >>> pipe = AugmentPipe(AugmentConfig(p=0.0))
    >>> x = torch.rand(2, 3, 8, 8)
    >>> y, labels = pipe(x, torch.Generator().manual_seed(0))
    >>> bool((y == x).all()), labels.shape, float(labels.abs().sum())
    (True, torch.Size([2, 9]), 0.0)
    """

    def __init__(self, cfg: AugmentConfig) -> None:
        self.cfg = cfg

    @property
    def label_dim(self) -> int:
        """Width of the augmentation label: the label sizes of the enabled ops summed (9 for the default config)."""
        return self.cfg.label_dim

    def __call__(self, images: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Augment ``images [N, C, H, W]`` with parameters drawn from ``generator``: (images, labels [N, label_dim])."""
        params = draw_augment(self.cfg, images.shape[0], generator)
        return self.apply(images, params)

    def apply(self, images: Tensor, params: Params) -> tuple[Tensor, Tensor]:
        """Apply ``params`` from :func:`draw_augment` to ``images [N, C, H, W]``: (augmented images, float32 labels
        ``[N, label_dim]`` on the images' device).
        """
        labels = augment_labels(self.cfg, params, (images.shape[2], images.shape[3]))
        return apply_augment(images, self.cfg, params), labels.to(images.device)


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
