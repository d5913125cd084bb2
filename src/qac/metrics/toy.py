"""Sample-quality metrics for toy point clouds ``[N, D]`` (docs/design.md §5 and §11).

* :func:`energy_distance` (primary): unbiased energy distance
  ED = 2·mean_{i,j}‖aᵢ − bⱼ‖ − mean_{i≠i'}‖aᵢ − aᵢ'‖ − mean_{j≠j'}‖bⱼ − bⱼ'‖ (can be slightly negative).
* :func:`w2_exact`: exact optimal-transport W2 between equal-size sets (≤ :data:`MAX_W2_POINTS`), by
  ``scipy.optimize.linear_sum_assignment`` on squared distances: W2 = sqrt(mean matched cost).
* :func:`mmd_rbf`: unbiased MMD² with a Gaussian kernel exp(−‖x − y‖² / (2h²)), summed over bandwidths h.

Each number should be read next to its data-vs-data floor (:func:`data_floor`, :func:`toy_report`): the
same metric between two disjoint draws of the reference data. Values below the floor are noise, not
"better".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from qac.errors import QACError

MAX_W2_POINTS = 2048
PointMetric = Callable[[torch.Tensor, torch.Tensor], float]


def _points(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    t = torch.as_tensor(x).detach().to(dtype=torch.float64, device="cpu")
    if t.ndim != 2 or t.shape[0] < 2:
        raise QACError(f"{name} must be points [N >= 2, D], got {tuple(t.shape)}")
    return t


def energy_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Unbiased energy distance between point sets ``a [N, D]`` and ``b [M, D]`` (float64).

    >>> energy_distance(torch.tensor([[0.0], [0.0]]), torch.tensor([[3.0], [3.0]]))
    6.0
    """
    a, b = _points(a, "a"), _points(b, "b")
    n, m = a.shape[0], b.shape[0]
    cross = torch.cdist(a, b).mean()
    within_a = torch.cdist(a, a).sum() / (n * (n - 1))
    within_b = torch.cdist(b, b).sum() / (m * (m - 1))
    return float(2 * cross - within_a - within_b)


def w2_exact(a: torch.Tensor, b: torch.Tensor) -> float:
    """Exact W2 between two equal-size point sets (optimal assignment on squared distances).

    >>> w2_exact(torch.tensor([[0.0, 0.0], [1.0, 0.0]]), torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
    1.0
    """
    a, b = _points(a, "a"), _points(b, "b")
    if a.shape != b.shape:
        raise QACError(f"w2_exact needs equal-size sets, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] > MAX_W2_POINTS:
        raise QACError(f"w2_exact is limited to {MAX_W2_POINTS} points (got {a.shape[0]}): subsample first")
    cost = (torch.cdist(a, b) ** 2).numpy()
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].mean()))


def mmd_rbf(a: torch.Tensor, b: torch.Tensor, bandwidths: float | Sequence[float] = (0.5, 1.0, 2.0)) -> float:
    """Unbiased MMD² with the kernel Σ_h exp(−‖x − y‖²/(2h²)) (can be slightly negative).

    >>> round(mmd_rbf(torch.zeros(3, 2), torch.zeros(3, 2)), 12)
    0.0
    """
    a, b = _points(a, "a"), _points(b, "b")
    hs = [float(bandwidths)] if isinstance(bandwidths, (int, float)) else [float(h) for h in bandwidths]

    def k(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        d2 = torch.cdist(x, y) ** 2
        return sum(torch.exp(-d2 / (2 * h * h)) for h in hs)

    n, m = a.shape[0], b.shape[0]
    kaa, kbb = k(a, a), k(b, b)
    within_a = (kaa.sum() - kaa.diagonal().sum()) / (n * (n - 1))
    within_b = (kbb.sum() - kbb.diagonal().sum()) / (m * (m - 1))
    return float(within_a + within_b - 2 * k(a, b).mean())


#: Toy metrics by name (all are distances between point sets; none is a proxy).
TOY_METRICS: dict[str, PointMetric] = {
    "energy_distance": energy_distance,
    "w2": w2_exact,
    "mmd": mmd_rbf,
}


def _split(reference: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    ref = _points(reference, "reference")
    perm = torch.randperm(ref.shape[0], generator=torch.Generator().manual_seed(seed))
    half = ref.shape[0] // 2
    return ref[perm[:half]], ref[perm[half:2 * half]]


def data_floor(metric: str | PointMetric, reference: torch.Tensor, seed: int = 0) -> float:
    """The metric between two disjoint random halves of ``reference`` (its noise floor at N/2 points).

    >>> ref = torch.randn(400, 2, generator=torch.Generator().manual_seed(0))
    >>> abs(data_floor("energy_distance", ref)) < 0.05
    True
    """
    fn = TOY_METRICS[metric] if isinstance(metric, str) else metric
    half_a, half_b = _split(reference, seed)
    return fn(half_a, half_b)


def toy_report(samples: torch.Tensor, reference: torch.Tensor, metrics: Sequence[str] = tuple(TOY_METRICS),
               seed: int = 0) -> dict[str, float]:
    """Each metric of ``samples`` vs one half of ``reference``, with its floor (the other half vs the
    same half), at equal set sizes: ``{name: value, name + "_floor": floor, "n": points per set}``.

    ``reference`` should hold about twice as many points as ``samples`` (both are cut to the half size).

    >>> g = torch.Generator().manual_seed(0)
    >>> rep = toy_report(torch.randn(100, 2, generator=g) + 1, torch.randn(200, 2, generator=g))
    >>> rep["energy_distance"] > rep["energy_distance_floor"]
    True
    """
    unknown = [m for m in metrics if m not in TOY_METRICS]
    if unknown:
        raise QACError(f"unknown toy metric(s) {unknown}; choose from {sorted(TOY_METRICS)}")
    half_a, half_b = _split(reference, seed)
    gen = _points(samples, "samples")
    n = min(gen.shape[0], half_a.shape[0])
    gen = gen[torch.randperm(gen.shape[0], generator=torch.Generator().manual_seed(seed + 1))[:n]]
    half_a, half_b = half_a[:n], half_b[:n]
    report: dict[str, float] = {"n": float(n)}
    for name in metrics:
        report[name] = TOY_METRICS[name](gen, half_a)
        report[f"{name}_floor"] = TOY_METRICS[name](half_b, half_a)
    return report
