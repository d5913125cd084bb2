"""Editing tasks: a registry from a task name to its degradation (operator ``A`` plus mask Ω).

Tasks: ``sr2``, ``sr4``, ``sr8`` (super-resolution), ``colorize``, ``inpaint-box``, ``inpaint-random``,
``inpaint-half``, ``inpaint-mask`` (a PNG). Names joined by ``+`` compose: ``sr2+inpaint-box`` averages 2×2
blocks and then hides a centred box of the low-resolution measurement (operators apply left to right and at
most one part may carry a mask, built in the final measurement space).

A :class:`Degradation` holds ``A`` and Ω and implements the two projections of Algorithm 2 (paper §4.4,
``docs/design.md §6``); Ω's convention is stated in :mod:`qac.edit.masks` (1 = missing).

>>> deg = make_degradation("sr2+inpaint-box", (1, 8, 8))
>>> tuple(deg.mask.shape), deg.op.measurement_shape((1, 8, 8))
((1, 4, 4), (1, 4, 4))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal, get_args

import torch
from torch import Tensor

from qac.edit.masks import box_mask, half_mask, no_mask, png_mask, random_mask
from qac.edit.operators import AvgPool, Compose, Identity, LinearOperator, Luminance
from qac.errors import QACError

Projection = Literal["nullspace", "literal"]
PROJECTIONS: tuple[str, ...] = get_args(Projection)


@dataclass(frozen=True)
class MaskOptions:
    """Settings of the masks: ``png`` path for ``inpaint-mask``; ``fraction``/``seed`` for ``inpaint-random``."""

    png: str | Path | None = None
    fraction: float = 0.5
    seed: int = 0


MaskBuilder = Callable[[tuple[int, int, int], MaskOptions], Tensor]


def _png(shape: tuple[int, int, int], opts: MaskOptions) -> Tensor:
    if opts.png is None:
        raise QACError("task inpaint-mask needs a mask PNG (--mask FILE; white = missing)")
    return png_mask(opts.png, shape)


@dataclass(frozen=True)
class TaskSpec:
    """One task: its operator and (for inpainting) how to build its mask."""

    name: str
    op: LinearOperator
    mask: MaskBuilder | None
    description: str


TASKS: Mapping[str, TaskSpec] = MappingProxyType({t.name: t for t in (
    TaskSpec("sr2", AvgPool(2), None, "super-resolution x2 (2x2 block average)"),
    TaskSpec("sr4", AvgPool(4), None, "super-resolution x4 (4x4 block average)"),
    TaskSpec("sr8", AvgPool(8), None, "super-resolution x8 (8x8 block average)"),
    TaskSpec("colorize", Luminance(), None, "colorization from BT.601 luminance (RGB only)"),
    TaskSpec("inpaint-box", Identity(), lambda s, o: box_mask(s), "inpaint a centred half-size box"),
    TaskSpec("inpaint-random", Identity(), lambda s, o: random_mask(s, o.fraction, o.seed),
             "inpaint a seeded random fraction of the pixels"),
    TaskSpec("inpaint-half", Identity(), lambda s, o: half_mask(s), "inpaint the right half"),
    TaskSpec("inpaint-mask", Identity(), _png, "inpaint the white pixels of a PNG mask"),
)})


@dataclass(frozen=True, eq=False)
class Degradation:
    """``A`` and Ω of one task for images of ``item_shape`` [C, H, W].

    ``projection`` chooses line 8 of Algorithm 2. ``literal`` is the paper's formula
    ``x ← A⁻¹[(Az)⊙(1−Ω) + (Ax)⊙Ω]``, exact when A is invertible (as in the consistency-model editing it
    comes from) but, with the non-square A of super-resolution and colorization, it throws away everything
    of x outside the range of A⁻¹ (the result is the blocky or gray input again). ``nullspace`` (default) is
    the same formula plus that part, ``x ← x + A⁻¹[(Az − Ax)⊙(1−Ω)]``; both agree when ``A⁻¹A = I``
    (inpainting) and both keep ``(Ax)⊙(1−Ω) = (Az)⊙(1−Ω)``.
    """

    name: str
    op: LinearOperator
    mask: Tensor
    item_shape: tuple[int, int, int]
    projection: Projection = "nullspace"

    def _omega(self, ref: Tensor) -> Tensor:
        return self.mask.to(device=ref.device, dtype=ref.dtype)

    def measure(self, z: Tensor) -> Tensor:
        """A z."""
        return self.op.forward(z)

    def degrade(self, z: Tensor) -> Tensor:
        """Algorithm 2 line 2: ``A⁻¹[(Az)⊙(1−Ω) + 0⊙Ω]``."""
        m = self.measure(z)
        return self.op.pinv(m * (1 - self._omega(m)))

    def view(self, z: Tensor) -> Tensor:
        """The degraded input drawn as an image (blocks, gray, missing pixels at 0 = mid-gray)."""
        m = self.measure(z)
        return self.op.view(m * (1 - self._omega(m)))

    def project(self, x: Tensor, z_meas: Tensor) -> Tensor:
        """Algorithm 2 line 8 given ``z_meas = A z`` (see the class docstring for the two forms)."""
        ax = self.measure(x)
        omega = self._omega(ax)
        if self.projection == "literal":
            return self.op.pinv(z_meas * (1 - omega) + ax * omega)
        return x + self.op.pinv((z_meas - ax) * (1 - omega))

    def kept_error(self, x: Tensor, z: Tensor) -> Tensor:
        """Data-consistency error per image: ``‖(Ax − Az)⊙(1−Ω)‖₂`` over the kept measurements."""
        ax, az = self.measure(x), self.measure(z)
        diff = (ax - az) * (1 - self._omega(ax))
        return diff.flatten(1).norm(dim=1)


def make_degradation(task: str, item_shape: tuple[int, ...], *, mask: MaskOptions | None = None,
                     projection: Projection = "nullspace") -> Degradation:
    """Build the degradation of ``task`` (a name from :data:`TASKS`, or names joined by ``+``)."""
    if len(item_shape) != 3:
        raise QACError("image editing needs an image model ([C, H, W] items), not point data")
    if projection not in PROJECTIONS:
        raise QACError(f"projection must be one of {', '.join(PROJECTIONS)}, got {projection!r}")
    opts = mask or MaskOptions()
    parts = [p.strip() for p in task.split("+")]
    unknown = [p for p in parts if p not in TASKS]
    if unknown or not parts:
        raise QACError(f"unknown editing task {task!r}; choose from {', '.join(TASKS)} (or join them with +)")
    specs = [TASKS[p] for p in parts]
    masked = [s for s in specs if s.mask is not None]
    if len(masked) > 1:
        raise QACError(f"task {task!r} combines {len(masked)} masks; at most one part may be an inpainting task")
    op: LinearOperator = specs[0].op if len(specs) == 1 else Compose(tuple(s.op for s in specs))
    shape = op.measurement_shape(tuple(int(v) for v in item_shape))
    omega = masked[0].mask(shape, opts) if masked else no_mask(shape)
    return Degradation(task, op, omega.to(torch.float32), tuple(int(v) for v in item_shape), projection)
