"""Sampling weights over the code space (paper §3.3 online/offline collection, docs/design.md §3).

Online: ``w`` starts at 0 and after each batch ``w <- mu * w + (1 - mu) * count(index in batch)``, with ``mu``
the parameter-EMA decay of that step; under DDP the caller all-reduces :meth:`CodeWeights.batch_counts`
before :meth:`CodeWeights.update_counts`. Offline: :meth:`CodeWeights.from_indices` histograms the indices of
the whole training set. Sampling draws ``index ~ Categorical(w / sum w)``, each sample from its own seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from qac.conditions.fsq import Levels, codebook_size, index_to_codes, level_list
from qac.errors import QACError

__all__ = ["CODE_STREAM", "CodeWeights", "MAX_DENSE_CODEBOOK"]

#: Dense float64 weights up to 2^24 codes (128 MiB); the paper's largest codebook is 2^20.
MAX_DENSE_CODEBOOK = 2**24
#: Per-seed code draws come from numpy's SeedSequence of ``(CODE_STREAM, seed)``, not from torch's stream of
#: ``seed``: that stream also gives the sample's noise (``per_seed_randn``) and its first uniform is strongly
#: correlated with the noise (corr ≈ −0.7 with the second coordinate), which would tie the code to the noise.
#: (Adding a large offset to the torch seed does not help: the CPU generator keeps only the low 32 bits.)
CODE_STREAM = 0xC0DE


class CodeWeights:
    """Dense float64 weights ``w`` over the ``|C| = prod L_i`` codes (indices as in ``codes_to_index``).

    >>> cw = CodeWeights(2, 3)
    >>> cw.update(torch.tensor([5, 5, 1]), decay=0.0)
    >>> cw.probs()[[1, 5]].tolist()
    [0.3333333333333333, 0.6666666666666666]
    >>> cw.sample(seeds=[0, 1, 2]).tolist()  # doctest: +SKIP
    [5, 1, 5]
    """

    def __init__(self, levels: Levels, dim: int, device: torch.device | str = "cpu") -> None:
        self.levels = level_list(levels, dim)
        self.dim = int(dim)
        self.size = codebook_size(self.levels, self.dim)
        if self.size > MAX_DENSE_CODEBOOK:
            raise QACError(f"codebook of {self.size} codes is too large for dense sampling weights "
                           f"(max 2^24); use fewer levels or a smaller code dimension")
        self.weights = torch.zeros(self.size, dtype=torch.float64, device=torch.device(device))

    # ---- collection ---------------------------------------------------------------------------------
    def batch_counts(self, indices: torch.Tensor) -> torch.Tensor:
        """``bincount(indices, minlength=|C|)``, float64 on the weights' device (all-reduce it under DDP)."""
        idx = torch.as_tensor(indices).reshape(-1).to(device=self.weights.device, dtype=torch.int64)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.size):
            raise ValueError(f"code index outside [0, {self.size})")
        return torch.bincount(idx, minlength=self.size).to(torch.float64)

    def update_counts(self, counts: torch.Tensor, decay: float) -> None:
        """``w <- decay * w + (1 - decay) * counts`` (paper §3.3 online collection)."""
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        counts = counts.to(device=self.weights.device, dtype=torch.float64)
        self.weights.mul_(decay).add_(counts, alpha=1.0 - decay)

    def update(self, indices: torch.Tensor, decay: float) -> None:
        """One online step from this batch's code indices: ``update_counts(batch_counts(indices), decay)``."""
        self.update_counts(self.batch_counts(indices), decay)

    @classmethod
    def from_indices(cls, indices: torch.Tensor, levels: Levels, dim: int) -> CodeWeights:
        """Offline collection: the histogram (counts) of ``indices`` over the codebook."""
        cw = cls(levels, dim, device=torch.as_tensor(indices).device)
        cw.weights = cw.batch_counts(indices)
        return cw

    # ---- distribution -------------------------------------------------------------------------------
    def total(self) -> float:
        """Sum of the weights (online: an EMA of batch counts; offline: items encoded); 0 before collection."""
        return float(self.weights.sum())

    def probs(self) -> torch.Tensor:
        """``w / sum w`` [|C|] float64; raises :class:`QACError` when no code has been seen."""
        tot = self.weights.sum()
        if not bool(tot > 0):
            raise QACError("code weights are all zero: collect weights (train or `collect`) before sampling")
        return self.weights / tot

    def uniform_over_used(self, threshold: float = 0.0) -> CodeWeights:
        """New weights, uniform over codes with probability ``> threshold`` (sampling option of docs/design.md §3)."""
        out = CodeWeights(self.levels, self.dim, device=self.weights.device)
        out.weights = (self.probs() > threshold).to(torch.float64)
        if not bool(out.weights.any()):
            raise QACError(f"no code has probability above {threshold}")
        return out

    def sample(self, seeds: Sequence[int] | None = None, n: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw code indices ~ Categorical(w / sum w) as int64 [N] on the weights' device.

        With ``seeds``, sample k uses one float64 uniform from
        ``np.random.default_rng((CODE_STREAM, seeds[k]))`` (a stream independent of the sample's noise) and
        inverse-CDF lookup, so it depends only on seed k (not on the batch). Otherwise ``n`` draws from
        ``generator``.
        """
        p = self.probs()
        if seeds is not None:
            u = torch.tensor([np.random.default_rng((CODE_STREAM, int(s))).random() for s in seeds],
                             dtype=torch.float64)
        elif n is not None:
            u = torch.rand(int(n), generator=generator, dtype=torch.float64)
        else:
            raise ValueError("CodeWeights.sample needs seeds or n")
        cdf = torch.cumsum(p, dim=0)
        idx = torch.searchsorted(cdf, (u.to(cdf.device) * cdf[-1]).contiguous(), right=True)
        last_used = int(torch.nonzero(p > 0)[-1])
        return idx.clamp_(max=last_used)

    def sample_codes(self, seeds: Sequence[int] | None = None, n: int | None = None,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`sample`, also returning the codes ``index_to_codes`` [N, d] (float32, in 0..L-1)."""
        idx = self.sample(seeds=seeds, n=n, generator=generator)
        return idx, index_to_codes(idx, self.levels, self.dim)

    # ---- statistics ---------------------------------------------------------------------------------
    def num_used(self, threshold: float = 0.0) -> int:
        """Number of codes with probability ``> threshold`` (0 when nothing was collected)."""
        if not bool(self.weights.sum() > 0):
            return 0
        return int((self.probs() > threshold).sum())

    def entropy(self) -> float:
        """Shannon entropy of ``w / sum w`` in nats."""
        p = self.probs()
        p = p[p > 0]
        return float(-(p * p.log()).sum())

    def perplexity(self) -> float:
        """``exp(entropy)``: the effective number of codes."""
        return float(torch.exp(torch.tensor(self.entropy(), dtype=torch.float64)))

    def topk(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` most likely code indices and their probabilities (descending)."""
        p = self.probs()
        vals, idx = torch.topk(p, min(int(k), self.size))
        return idx, vals

    def stats(self) -> dict[str, float]:
        """Plain numbers for ``stats.jsonl``: codebook size, used codes (p > 0 and p > 1e-3), perplexity."""
        if not bool(self.weights.sum() > 0):
            return {"codebook": float(self.size), "used": 0.0, "used_1e-3": 0.0, "perplexity": 0.0}
        return {"codebook": float(self.size), "used": float(self.num_used()),
                "used_1e-3": float(self.num_used(1e-3)), "perplexity": self.perplexity()}

    # ---- persistence --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only (safetensors-friendly): ``weights`` float64 [|C|] and ``levels`` int64 [d]."""
        return {"weights": self.weights.detach().cpu().clone(),
                "levels": torch.tensor(self.levels, dtype=torch.int64)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load :meth:`state_dict` output onto these weights' device; :class:`QACError` for other levels or size."""
        levels = [int(v) for v in state["levels"]]
        if levels != self.levels:
            raise QACError(f"code weights were saved for levels {levels}, expected {self.levels}")
        w = state["weights"]
        if w.shape != (self.size,):
            raise QACError(f"code weights have shape {tuple(w.shape)}, expected ({self.size},)")
        self.weights = w.to(device=self.weights.device, dtype=torch.float64).clone()

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor],
                        device: torch.device | str = "cpu") -> CodeWeights:
        """New weights with the levels and values of :meth:`state_dict` output, on ``device``."""
        levels = [int(v) for v in state["levels"]]
        cw = cls(levels, len(levels), device=device)
        cw.load_state_dict(state)
        return cw

    def to(self, device: torch.device | str) -> CodeWeights:
        """Move the weights in place; returns ``self``."""
        self.weights = self.weights.to(torch.device(device))
        return self
