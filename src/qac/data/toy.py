"""Toy 2-D data sets (infinite streams with seeded generators).

Definitions follow the CPU toy benchmark in docs/design.md §11 where it fixes them
(8gaussians, moons, checkerboard); spirals and rings are ours, on the same scale (points within
about [-4, 4]^2, per-axis std 1-3). Every sampler also returns the index of the mixture component
a point came from (the "oracle condition" of §7), stored as the data set's labels.

* ``8gaussians``: centres ``4 (cos 2πk/8, sin 2πk/8)``, k ~ U{0..7}, plus N(0, 0.3² I). Labels k (8).
* ``moons``: ``(cos θ, sin θ)`` or ``(1 - cos θ, 0.5 - sin θ)``, θ ~ U(0, π), plus N(0, 0.1² I), minus
  (0.5, 0.25), then ×2. Labels: which moon (2).
* ``checkerboard``: ``x1 ~ U(-2, 2)``, ``x2 = U(0,1) - 2 Bern(½) + (⌊x1⌋ mod 2)``, then ×2 (FFJORD
  style): uniform on the 8 cells of side 2 in [-4, 4]² with an even sum of cell coordinates.
  Labels: the cell (8).
* ``spirals``: two arms ``r (cos(θ + aπ), sin(θ + aπ))`` with θ = 3π √u (u ~ U(0,1), uniform along
  the arc), r = 4θ/(3π) (1.5 turns, radius up to 4), plus N(0, 0.15² I). Labels: arm a (2).
* ``rings``: radius j + 1 for j ~ U{0..3} (equal weight per ring), angle ~ U(0, 2π), plus
  N(0, 0.08² I). Labels: ring j (4).

>>> from qac.util import seed_generator
>>> sample_toy("moons", 5, seed_generator(0)).shape
torch.Size([5, 2])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch

from qac.data.base import ArrayDataset
from qac.errors import QACError
from qac.util import seed_generator

DEFAULT_TOY_POINTS = 20000

ToySampler = Callable[[int, "torch.Generator | None"], "tuple[torch.Tensor, torch.Tensor]"]


def _u(n: int, g: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=g, dtype=torch.float64)


def _randint(high: int, n: int, g: torch.Generator | None) -> torch.Tensor:
    return torch.randint(0, high, (n,), generator=g)


def _noise(n: int, std: float, g: torch.Generator | None) -> torch.Tensor:
    return std * torch.randn(n, 2, generator=g, dtype=torch.float64)


def _eight_gaussians(n: int, g: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    k = _randint(8, n, g)
    angle = 2 * math.pi * k.double() / 8
    x = 4.0 * torch.stack([angle.cos(), angle.sin()], dim=1) + _noise(n, 0.3, g)
    return x, k


def _moons(n: int, g: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    moon = _randint(2, n, g)
    theta = math.pi * _u(n, g)
    upper = torch.stack([theta.cos(), theta.sin()], dim=1)
    lower = torch.stack([1 - theta.cos(), 0.5 - theta.sin()], dim=1)
    x = torch.where(moon[:, None] == 0, upper, lower) + _noise(n, 0.1, g)
    x = 2.0 * (x - torch.tensor([0.5, 0.25], dtype=torch.float64))
    return x, moon


def _checkerboard(n: int, g: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    x1 = 4 * _u(n, g) - 2
    b = _randint(2, n, g)
    col = torch.floor(x1)
    x2 = _u(n, g) - 2 * b.double() + torch.remainder(col, 2)
    label = (col.long() + 2) * 2 + b
    return 2.0 * torch.stack([x1, x2], dim=1), label


def _spirals(n: int, g: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    arm = _randint(2, n, g)
    theta = 3 * math.pi * _u(n, g).sqrt()
    r = 4 * theta / (3 * math.pi)
    phase = theta + math.pi * arm.double()
    x = r[:, None] * torch.stack([phase.cos(), phase.sin()], dim=1) + _noise(n, 0.15, g)
    return x, arm


def _rings(n: int, g: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    ring = _randint(4, n, g)
    angle = 2 * math.pi * _u(n, g)
    r = ring.double() + 1
    x = r[:, None] * torch.stack([angle.cos(), angle.sin()], dim=1) + _noise(n, 0.08, g)
    return x, ring


@dataclass(frozen=True)
class ToySpec:
    """One registered toy set: a sampler ``(n, generator) -> (points float64 [n,2], labels int64 [n])``."""

    name: str
    sampler: ToySampler
    num_classes: int
    description: str


TOY_DATASETS: Mapping[str, ToySpec] = MappingProxyType({
    "8gaussians": ToySpec("8gaussians", _eight_gaussians, 8, "8 Gaussians, radius 4, std 0.3"),
    "moons": ToySpec("moons", _moons, 2, "two moons, noise 0.1, centred, x2"),
    "checkerboard": ToySpec("checkerboard", _checkerboard, 8, "4x4 checkerboard on [-4,4]^2"),
    "spirals": ToySpec("spirals", _spirals, 2, "two spirals, 1.5 turns, radius 4, noise 0.15"),
    "rings": ToySpec("rings", _rings, 4, "concentric circles r=1..4, noise 0.08"),
})
"""Registry of toy 2-D sets by canonical name."""

TOY_ALIASES: Mapping[str, str] = MappingProxyType({
    "8gauss": "8gaussians", "checker": "checkerboard", "2spirals": "spirals", "circles": "rings",
})
"""Alternative spellings (the names used in docs/design.md §11)."""


def toy_spec(name: str) -> ToySpec:
    """Look up a toy set by name or alias; unknown names raise :class:`QACError` listing valid ones."""
    key = TOY_ALIASES.get(name, name)
    if key not in TOY_DATASETS:
        valid = ", ".join(sorted(TOY_DATASETS))
        raise QACError(f"unknown toy data set {name!r} (valid: {valid})")
    return TOY_DATASETS[key]


def sample_toy(name: str, n: int, generator: torch.Generator | None = None, *,
               return_labels: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` fresh points ``float32 [n, 2]`` from toy set ``name`` (CPU generator).

    With ``return_labels=True`` also returns the mixture-component labels ``int64 [n]``.
    The same generator state gives the same points; advancing it gives fresh ones.

    >>> from qac.util import seed_generator
    >>> x, k = sample_toy("8gaussians", 3, seed_generator(1), return_labels=True)
    >>> x.shape, k.shape
    (torch.Size([3, 2]), torch.Size([3]))
    """
    spec = toy_spec(name)
    if n < 0:
        raise QACError(f"number of toy points must be >= 0, got {n}")
    x, labels = spec.sampler(int(n), generator)
    x = x.to(torch.float32)
    return (x, labels.to(torch.int64)) if return_labels else x


def parse_toy_source(source: str) -> tuple[str, int]:
    """Split ``"toy:NAME[:N]"`` into ``(canonical name, N)``; bad forms raise :class:`QACError`."""
    parts = source.split(":")
    if len(parts) not in (2, 3) or parts[0] != "toy":
        raise QACError(f"bad toy source {source!r}: use toy:NAME or toy:NAME:N, e.g. toy:moons:5000")
    n = DEFAULT_TOY_POINTS
    if len(parts) == 3:
        try:
            n = int(parts[2])
        except ValueError:
            n = -1
        if n < 1:
            raise QACError(f"bad point count in toy source {source!r}: need a positive integer")
    return toy_spec(parts[1]).name, n


def open_toy(source: str, *, max_items: int | None = None, seed: int = 0) -> ArrayDataset:
    """A fixed toy data set from ``"toy:NAME[:N]"`` (default N = 20000), generated from ``seed``.

    ``max_items`` caps N. Labels are the mixture components (see the module table).

    >>> ds = open_toy("toy:rings:100", seed=3)
    >>> ds.kind, tuple(ds.data.shape), ds.num_classes
    ('points', (100, 2), 4)
    """
    name, n = parse_toy_source(source)
    if max_items is not None:
        if max_items < 1:
            raise QACError(f"max_items must be >= 1, got {max_items}")
        n = min(n, max_items)
    x, labels = sample_toy(name, n, seed_generator(seed), return_labels=True)
    return ArrayDataset(x, labels, "points", f"toy:{name}")
