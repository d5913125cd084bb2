"""Fréchet distance and KID on feature statistics (docs/design.md §5), plus the result record.

Fréchet distance between N(μ₁, Σ₁) and N(μ₂, Σ₂) (Heusel et al. 2017; EDM ``fid.py``):

    FD = ‖μ₁ − μ₂‖² + Tr Σ₁ + Tr Σ₂ − 2 Tr (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}

computed in float64 from symmetric eigendecompositions only (no ``scipy.linalg.sqrtm``, no complex
arithmetic, no "imaginary component" failure). With Σᵢ = Vᵢ diag(λᵢ) Vᵢᵀ (``eigh``, round-off negatives
clipped to 0) write Σᵢ = AᵢAᵢᵀ, Aᵢ = Vᵢ diag(√λᵢ). Then Σ₁^{1/2} Σ₂ Σ₁^{1/2} has the eigenvalues of
(A₁ᵀA₂)(A₁ᵀA₂)ᵀ, so

    Tr (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2} = Tr sqrtm(Σ₁Σ₂) = Σ singular values of A₁ᵀA₂.

Taking singular values of A₁ᵀA₂ instead of square roots of ``eigvalsh(Σ₁^{1/2} Σ₂ Σ₁^{1/2})`` (which is
the same quantity squared) matters for rank-deficient covariances (N < D): there the null space carries
round-off of order ε‖Σ‖², whose square roots (√ε‖Σ‖ each, over ~2000 directions) gave FD(x, x) ≈ −1e-4;
the singular values keep it at ≈ 1e-12.

KID (Bińkowski et al. 2018): unbiased MMD² with the cubic polynomial kernel k(x, y) = (xᵀy/D + 1)³,
averaged over random subsets.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from qac.errors import QACError

#: Below this many samples the 2048-d Inception covariance is rank-deficient and FID is biased high.
MIN_RELIABLE_N = 2048


def _psd_factor(mat: np.ndarray) -> np.ndarray:
    """A with A·Aᵀ = mat for a PSD matrix, via ``eigh`` (negative round-off eigenvalues -> 0)."""
    w, v = np.linalg.eigh(0.5 * (mat + mat.T))
    return v * np.sqrt(np.clip(w, 0.0, None))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between two Gaussians, float64, eigendecomposition-based (module docstring).

    The result may be a tiny negative number (≈ −1e-14·Tr Σ) from round-off when the inputs are equal.

    >>> frechet_distance(np.zeros(2), np.eye(2), np.ones(2), 4 * np.eye(2))
    4.0
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise QACError(f"statistics do not match: mu {mu1.shape} vs {mu2.shape}, "
                       f"sigma {s1.shape} vs {s2.shape} (made with different detectors?)")
    tr_cross = float(np.linalg.svd(_psd_factor(s1).T @ _psd_factor(s2), compute_uv=False).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_cross)


@dataclass(frozen=True)
class KIDResult:
    """KID mean and standard deviation over subsets (unbiased MMD², cubic polynomial kernel)."""

    value: float
    std: float
    subsets: int
    subset_size: int
    n1: int
    n2: int
    metric: str = "kid"

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


def kid(feats1: np.ndarray, feats2: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0, metric: str = "kid") -> KIDResult:
    """Kernel Inception Distance between feature arrays ``[N1, D]`` and ``[N2, D]``.

    Each of ``subsets`` rounds draws ``m = min(subset_size, N1, N2)`` rows from each set (without
    replacement, seeded) and computes the unbiased MMD²

        (1/(m(m−1))) Σ_{i≠j} [k(xᵢ,xⱼ) + k(yᵢ,yⱼ)] − (2/m²) Σ_{i,j} k(xᵢ,yⱼ),   k(a,b) = (aᵀb/D + 1)³.

    >>> rng = np.random.default_rng(0)
    >>> r = kid(rng.normal(size=(200, 8)), rng.normal(size=(200, 8)) + 1.0, subsets=5, subset_size=100)
    >>> r.value > 0
    True
    """
    x_all = np.asarray(feats1, np.float64)
    y_all = np.asarray(feats2, np.float64)
    if x_all.ndim != 2 or y_all.ndim != 2 or x_all.shape[1] != y_all.shape[1]:
        raise QACError(f"KID needs feature arrays [N, D] of equal D, got {x_all.shape} and {y_all.shape}")
    d = x_all.shape[1]
    m = min(subset_size, x_all.shape[0], y_all.shape[0])
    if m < 2:
        raise QACError(f"KID needs at least 2 features per set, got {x_all.shape[0]} and {y_all.shape[0]}")
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for s in range(subsets):
        x = x_all[rng.choice(x_all.shape[0], m, replace=False)]
        y = y_all[rng.choice(y_all.shape[0], m, replace=False)]
        kxx = (x @ x.T / d + 1.0) ** 3
        kyy = (y @ y.T / d + 1.0) ** 3
        kxy = (x @ y.T / d + 1.0) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values[s] = within - 2.0 * kxy.sum() / (m * m)
    return KIDResult(float(values.mean()), float(values.std()), subsets, m,
                     int(x_all.shape[0]), int(y_all.shape[0]), metric)


@dataclass(frozen=True)
class FIDResult:
    """One FID (or ``proxy_*`` Fréchet-distance) number with everything needed to judge it.

    ``comparable_to_published`` is true only for the EDM protocol with the known NVIDIA detector,
    at least 50k samples, and a reference made with the same detector.
    """

    value: float
    n: int
    n_ref: int | None
    seeds: str | None
    detector_sha256: str
    protocol: str
    metric: str = "fid"
    small_sample: bool = False
    comparable_to_published: bool = False
    kid: float | None = None
    kid_std: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (how results files store the number)."""
        return asdict(self)


def check_sample_size(n: int, metric: str = "fid") -> bool:
    """Warn (and return True) when ``n`` is below :data:`MIN_RELIABLE_N`."""
    if n < MIN_RELIABLE_N:
        warnings.warn(f"{metric} from only {n} samples (< {MIN_RELIABLE_N}): the covariance is "
                      f"rank-deficient and the value is biased high; not comparable to 50k numbers",
                      stacklevel=3)
        return True
    return False
