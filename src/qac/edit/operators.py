"""Linear degradations ``A`` with a right pseudo-inverse ``A⁻¹`` (``A A⁻¹ = I``) for Algorithm 2 (paper §4.4).

Each operator maps a batch of images ``[B, C, H, W]`` to measurements ``[B, C', H', W']`` and back; both
directions are batched, work on any device and dtype, and keep the batch dimension untouched:

* :class:`Identity` — ``A = I`` (inpainting: the mask alone says what is missing);
* :class:`AvgPool` — super-resolution ×k: ``A`` averages each k×k block, ``A⁻¹`` repeats each value over its
  block (nearest upsampling), so ``A A⁻¹ m = m`` exactly;
* :class:`Luminance` — colorization: ``A x = Σ_c w_c x_c`` with the ITU-R BT.601 luma weights
  ``w = (0.299, 0.587, 0.114)``; ``A⁻¹ m = w m / ‖w‖²`` (the Moore–Penrose pseudo-inverse of the 1×3 row
  ``w``), so ``A A⁻¹ m = m``. Because ``Σ w = 1``, a gray pixel (v, v, v) has luminance v;
* :class:`Compose` — ``A = A_k ∘ … ∘ A_1`` with ``A⁻¹ = A_1⁻¹ ∘ … ∘ A_k⁻¹`` (still a right inverse).

``view(m)`` renders a measurement as an image for pictures and for the "degraded input" baseline score:
blocks for super-resolution, the gray image (v, v, v) for colorization.

>>> x = torch.rand(2, 3, 8, 8)
>>> op = Compose((AvgPool(2), Luminance()))
>>> op.measurement_shape((3, 8, 8))
(1, 4, 4)
>>> m = op.forward(x)
>>> bool(torch.allclose(op.forward(op.pinv(m)), m, atol=1e-6))
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from qac.errors import QACError

BT601 = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights (R, G, B); they sum to 1."""


class LinearOperator(Protocol):
    """A linear map with a right inverse: ``forward`` is A, ``pinv`` is A⁻¹ with ``A A⁻¹ = I``."""

    name: str

    def measurement_shape(self, item_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """Shape [C', H', W'] of ``A x`` for one image of ``item_shape``; a :class:`QACError` if impossible."""

    def forward(self, x: Tensor) -> Tensor:
        """A x."""

    def pinv(self, m: Tensor) -> Tensor:
        """A⁻¹ m."""

    def view(self, m: Tensor) -> Tensor:
        """The measurement drawn as an image of the input's shape."""


@dataclass(frozen=True)
class Identity:
    """A = A⁻¹ = I."""

    name: str = "identity"

    def measurement_shape(self, item_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """The input shape unchanged (A = I)."""
        return tuple(item_shape)

    def forward(self, x: Tensor) -> Tensor:
        """A x = x."""
        return x

    def pinv(self, m: Tensor) -> Tensor:
        """A⁻¹ m = m."""
        return m

    def view(self, m: Tensor) -> Tensor:
        """The measurement itself: it is already an image."""
        return m


@dataclass(frozen=True)
class AvgPool:
    """Super-resolution ×``factor``: A = k×k block average, A⁻¹ = nearest upsampling."""

    factor: int
    name: str = "avgpool"

    def __post_init__(self) -> None:
        if self.factor < 1:
            raise QACError(f"super-resolution factor must be >= 1, got {self.factor}")

    def measurement_shape(self, item_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """``(C, H/k, W/k)`` for k = ``factor``; a :class:`QACError` when k does not divide H and W."""
        c, h, w = item_shape
        if h % self.factor or w % self.factor:
            raise QACError(f"image size {h}x{w} is not divisible by the super-resolution factor {self.factor}")
        return c, h // self.factor, w // self.factor

    def forward(self, x: Tensor) -> Tensor:
        """A x: the mean of each k×k block, ``[B, C, H, W] -> [B, C, H/k, W/k]``."""
        return F.avg_pool2d(x, self.factor)

    def pinv(self, m: Tensor) -> Tensor:
        """A⁻¹ m: each value repeated over its k×k block (nearest upsampling), ``[B, C, h, w] -> [B, C, hk, wk]``."""
        return m.repeat_interleave(self.factor, dim=-2).repeat_interleave(self.factor, dim=-1)

    def view(self, m: Tensor) -> Tensor:
        """The low-resolution measurement drawn at full size as k×k blocks (the same as :meth:`pinv`)."""
        return self.pinv(m)


@dataclass(frozen=True)
class Luminance:
    """Colorization: A = BT.601 luminance (3 -> 1 channel), A⁻¹ = w/‖w‖² (pseudo-inverse)."""

    weights: tuple[float, float, float] = BT601
    name: str = "luminance"

    def measurement_shape(self, item_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """``(1, H, W)``; a :class:`QACError` unless the images are RGB (C = 3)."""
        c, h, w = item_shape
        if c != 3:
            raise QACError(f"colorization needs RGB (3-channel) images; these have {c} channel(s)")
        return 1, h, w

    def _w(self, ref: Tensor) -> Tensor:
        return torch.tensor(self.weights, dtype=ref.dtype, device=ref.device).reshape(1, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        """A x = Σ_c w_c x_c, the BT.601 luma: ``[B, 3, H, W] -> [B, 1, H, W]``."""
        return (x * self._w(x)).sum(dim=1, keepdim=True)

    def pinv(self, m: Tensor) -> Tensor:
        """A⁻¹ m = w m / ‖w‖², the minimum-norm colour image with luma m: ``[B, 1, H, W] -> [B, 3, H, W]``."""
        w = self._w(m)
        return m * w / (w * w).sum()

    def view(self, m: Tensor) -> Tensor:
        """The luma as a gray image (m, m, m): ``[B, 1, H, W] -> [B, 3, H, W]`` (an expanded view, no copy)."""
        return m.expand(-1, 3, -1, -1)


@dataclass(frozen=True)
class Compose:
    """A = ops[-1] ∘ … ∘ ops[0]; A⁻¹ applies the pseudo-inverses in reverse order."""

    ops: tuple[LinearOperator, ...]
    name: str = "compose"

    def measurement_shape(self, item_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """The shape after each operator in turn (any of them may raise its :class:`QACError`)."""
        for op in self.ops:
            item_shape = op.measurement_shape(item_shape)
        return item_shape

    def forward(self, x: Tensor) -> Tensor:
        """A x: the operators applied in order, ``ops[0]`` first."""
        for op in self.ops:
            x = op.forward(x)
        return x

    def pinv(self, m: Tensor) -> Tensor:
        """A⁻¹ m: the pseudo-inverses applied in reverse order, a right inverse of the composition."""
        for op in reversed(self.ops):
            m = op.pinv(m)
        return m

    def view(self, m: Tensor) -> Tensor:
        """The measurement drawn as an input-shaped image: each operator's ``view`` in reverse order."""
        for op in reversed(self.ops):
            m = op.view(m)
        return m
