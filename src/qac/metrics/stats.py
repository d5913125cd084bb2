"""Streaming feature statistics (docs/design.md §5) and EDM-compatible reference files.

:class:`FeatureStats` accumulates, in float64, the count N, the sum Σf and the sum of outer products
Σffᵀ of D-dimensional features, so that (EDM ``fid.py`` protocol)

    μ = Σf / N,        Σ = (Σffᵀ − N·μμᵀ) / (N − 1)        (unbiased covariance).

The three sums add up across batches and processes: :meth:`FeatureStats.merge` joins two objects, and
:meth:`FeatureStats.state_dict` returns tensors that an all-reduce by *sum* combines. Optionally a
bounded, seeded reservoir of raw features is kept for KID.

Reference files are ``.npz`` archives with the EDM keys ``mu`` and ``sigma`` plus one extra key
``meta`` holding a JSON string (N, detector sha256, protocol, dataset description); they load
without pickle.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qac.errors import QACError
from qac.util import atomic_write_bytes


def _accumulation_device(device: torch.device) -> torch.device:
    """float64 is not available on MPS: accumulate there on the CPU."""
    return torch.device("cpu") if device.type == "mps" else device


class FeatureStats:
    """Mergeable float64 running statistics of ``[B, D]`` feature batches.

    Args:
        dim: feature dimension D.
        keep: how many raw features to keep in a uniform random reservoir (0: none), e.g. for KID.
        seed: seed of the reservoir sampling (the sums themselves are deterministic).

    >>> st = FeatureStats(2)
    >>> st.update(torch.tensor([[0.0, 1.0], [2.0, 3.0]]))
    >>> st.mean().tolist(), st.cov().tolist()
    ([1.0, 2.0], [[2.0, 2.0], [2.0, 2.0]])
    """

    def __init__(self, dim: int, keep: int = 0, seed: int = 0) -> None:
        if dim < 1 or keep < 0:
            raise ValueError(f"need dim >= 1 and keep >= 0, got dim={dim}, keep={keep}")
        self.dim = int(dim)
        self.keep = int(keep)
        self.seed = int(seed)
        self.n = 0
        self._sum: torch.Tensor | None = None
        self._outer: torch.Tensor | None = None
        self._kept = np.zeros((0, self.dim), dtype=np.float32)
        self._rng = np.random.default_rng(self.seed)

    # -- accumulation ---------------------------------------------------------------------------
    def _ensure(self, device: torch.device) -> None:
        if self._sum is None:
            dev = _accumulation_device(device)
            self._sum = torch.zeros(self.dim, dtype=torch.float64, device=dev)
            self._outer = torch.zeros(self.dim, self.dim, dtype=torch.float64, device=dev)

    def update(self, feats: torch.Tensor | np.ndarray) -> None:
        """Add a batch of features ``[B, D]`` (any float dtype, any device)."""
        x = torch.as_tensor(feats)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected features [B, {self.dim}], got {tuple(x.shape)}")
        self._ensure(x.device)
        assert self._sum is not None and self._outer is not None
        x64 = x.detach().to(device=self._sum.device, dtype=torch.float64)
        self.n += x64.shape[0]
        self._sum += x64.sum(0)
        self._outer += x64.T @ x64
        if self.keep:
            self._reservoir_add(x.detach().float().cpu().numpy())

    def _reservoir_add(self, batch: np.ndarray) -> None:
        """Algorithm R: after the batch, ``_kept`` is a uniform sample of min(n, keep) rows."""
        seen = self.n - batch.shape[0]
        room = self.keep - self._kept.shape[0]
        if room > 0:
            self._kept = np.concatenate([self._kept, batch[:room]])
            batch, seen = batch[room:], seen + min(room, batch.shape[0])
        for row in batch:
            seen += 1
            j = int(self._rng.integers(seen))
            if j < self.keep:
                self._kept[j] = row

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Add ``other``'s statistics into ``self`` (in place) and return ``self``.

        The reservoirs combine into a uniform sample of the union: the number taken from each side
        is hypergeometric in the two counts.
        """
        if other.dim != self.dim:
            raise ValueError(f"cannot merge stats of dim {other.dim} into dim {self.dim}")
        if other.n == 0:
            return self
        assert other._sum is not None and other._outer is not None
        self._ensure(other._sum.device)
        assert self._sum is not None and self._outer is not None
        if self.keep and other.keep < min(self.keep, other.n):
            raise ValueError(f"cannot merge a reservoir of {other.keep} into one of {self.keep}")
        if self.keep:
            k = min(self.keep, self.n + other.n)
            n_self = int(self._rng.hypergeometric(self.n, other.n, k)) if self.n else 0
            pick = lambda arr, m: arr[self._rng.choice(arr.shape[0], size=m, replace=False)]
            self._kept = np.concatenate([pick(self._kept, n_self), pick(other._kept, k - n_self)])
        self.n += other.n
        self._sum += other._sum.to(self._sum.device)
        self._outer += other._outer.to(self._outer.device)
        return self

    # -- results ----------------------------------------------------------------------------------
    def mean(self) -> np.ndarray:
        """μ, float64 ``[D]``."""
        if self.n < 1 or self._sum is None:
            raise QACError("no features accumulated: the data source gave no items")
        return (self._sum / self.n).cpu().numpy()

    def cov(self) -> np.ndarray:
        """Unbiased covariance Σ, float64 ``[D, D]`` (needs N >= 2)."""
        if self.n < 2 or self._outer is None or self._sum is None:
            raise QACError(f"need at least 2 items for a covariance, got {self.n}")
        mu = self._sum / self.n
        sigma = (self._outer - self.n * torch.outer(mu, mu)) / (self.n - 1)
        sigma = 0.5 * (sigma + sigma.T)
        return sigma.cpu().numpy()

    def kept(self) -> np.ndarray:
        """The reservoir of raw features ``[min(N, keep), D]`` (float32)."""
        return self._kept.copy()

    # -- (de)serialisation, all-reduce ------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors ``n``, ``sum``, ``outer`` (float64) that an all-reduce by sum combines across ranks.

        The reservoir is not part of it (gather the :meth:`kept` arrays instead).
        """
        self._ensure(torch.device("cpu"))
        assert self._sum is not None and self._outer is not None
        n = torch.tensor(float(self.n), dtype=torch.float64, device=self._sum.device)
        return {"n": n, "sum": self._sum.clone(), "outer": self._outer.clone()}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], keep: int = 0, seed: int = 0,
                   kept: np.ndarray | None = None) -> FeatureStats:
        """Rebuild from :meth:`state_dict` output (possibly summed over ranks), optionally with the
        reservoir ``kept`` of those features (at most ``keep`` rows)."""
        s = torch.as_tensor(state["sum"], dtype=torch.float64)
        st = cls(int(s.shape[0]), keep=keep, seed=seed)
        st.n = int(round(float(state["n"])))
        st._sum = s.clone()
        st._outer = torch.as_tensor(state["outer"], dtype=torch.float64, device=s.device).clone()
        if kept is not None:
            st._kept = np.asarray(kept, dtype=np.float32)[:keep].reshape(-1, st.dim)
        return st


@dataclass(frozen=True)
class Reference:
    """Reference statistics: μ ``[D]``, Σ ``[D, D]`` (float64), metadata (may be empty for reference
    files made by other tools, e.g. EDM's published ``cifar10-32x32.npz``) and optionally a random
    subset of raw features ``[K, D]`` (float32) for KID."""

    mu: np.ndarray
    sigma: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    features: np.ndarray | None = None

    @property
    def n(self) -> int | None:
        """Number of features behind the statistics (``meta['n']``); None when the file has no metadata."""
        return self.meta.get("n")


def save_reference(path: str | os.PathLike[str], mu: np.ndarray, sigma: np.ndarray,
                   meta: dict[str, Any], features: np.ndarray | None = None) -> None:
    """Write ``mu``, ``sigma`` (EDM keys, float64), ``meta`` (JSON string in a 0-d array) and optionally
    ``features`` (a float32 subset of raw features, for KID) atomically.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "ref.npz")
    >>> save_reference(p, np.zeros(2), np.eye(2), {"n": 10, "protocol": "demo"})
    >>> load_reference(p).meta["n"]
    10
    """
    arrays = {"mu": np.asarray(mu, dtype=np.float64), "sigma": np.asarray(sigma, dtype=np.float64),
              "meta": np.array(json.dumps(meta, sort_keys=True))}
    if features is not None and len(features):
        arrays["features"] = np.asarray(features, dtype=np.float32)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_reference(path: str | os.PathLike[str]) -> Reference:
    """Load a reference ``.npz`` (ours or EDM's) without pickle; QACError if it is not one."""
    p = Path(path)
    if not p.is_file():
        raise QACError(f"reference statistics {str(p)!r} not found")
    try:
        with np.load(p, allow_pickle=False) as z:
            mu = np.asarray(z["mu"], dtype=np.float64)
            sigma = np.asarray(z["sigma"], dtype=np.float64)
            meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
            feats = np.asarray(z["features"], dtype=np.float32) if "features" in z.files else None
    except Exception as exc:  # ValueError, KeyError, OSError, BadZipFile, EOFError: not a reference file
        msg = " ".join(str(exc).split())[:160]
        raise QACError(f"{str(p)!r} is not a reference .npz with keys mu and sigma ({msg})") from None
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise QACError(f"{str(p)!r}: mu {mu.shape} and sigma {sigma.shape} do not fit together")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise QACError(f"{str(p)!r}: mu or sigma holds NaN/Inf (a damaged reference file)")
    return Reference(mu, sigma, meta, feats)
