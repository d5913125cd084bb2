"""Sample scores for benchmarks, each with its data floor: the energy distance against fresh points (toys) or
``proxy_randconv_fd`` against the whole image set (a proxy Fréchet distance, **not FID**).

>>> scorer = Scorer("toy:moons:20000", n_eval=500)  # doctest: +SKIP
>>> scorer.metric, scorer(samples), scorer.data_floor()  # doctest: +SKIP
('energy_distance', 0.0123, -0.0004)
"""

from __future__ import annotations

import torch

#: Seed of the fresh toy reference points (far from the training seeds 0, 1, 2, ...).
TOY_REFERENCE_SEED = 10**6 + 2


def toy_name(data: str) -> str | None:
    """``moons`` for ``toy:moons[:N]``; None for any other data source."""
    return data.split(":")[1] if data.startswith("toy:") else None


class Scorer:
    """Scores ``samples`` of the data source ``data`` with ``n_eval`` reference items (toys: fresh points;
    images: the whole set, its statistics computed once)."""

    def __init__(self, data: str, n_eval: int) -> None:
        from qac.data import open_dataset, sample_toy
        from qac.util import seed_generator

        self.data, self.n_eval = data, n_eval
        toy = toy_name(data)
        if toy is not None:
            self.reference = sample_toy(toy, 2 * n_eval, seed_generator(TOY_REFERENCE_SEED))
            self._ref_stats = None
        else:
            self.reference = open_dataset(data).as_float()
            self._ref_stats = self._stats(self.reference)

    @property
    def metric(self) -> str:
        """``energy_distance`` for toy data, ``proxy_randconv_fd`` (not FID) for image sets."""
        return "energy_distance" if self._ref_stats is None else "proxy_randconv_fd"

    @staticmethod
    def _stats(images: torch.Tensor):
        from qac.metrics.proxies import RandConvDetector
        from qac.metrics.stats import FeatureStats

        det = RandConvDetector(seed=0)
        st = FeatureStats(det.dim)
        for i in range(0, len(images), 500):
            st.update(det.features(images[i:i + 500].float()))
        return st

    def __call__(self, samples: torch.Tensor) -> float:
        """Score of ``samples`` (lower is better): energy distance to ``n_eval`` fresh toy points, or the random-conv
        Fréchet distance to the statistics of the whole image set.
        """
        from qac.metrics.frechet import frechet_distance
        from qac.metrics.toy import energy_distance

        if self._ref_stats is None:
            return energy_distance(samples, self.reference[:self.n_eval])
        st, ref = self._stats(samples), self._ref_stats
        return frechet_distance(st.mean(), st.cov(), ref.mean(), ref.cov())

    def data_floor(self) -> float:
        """The score of real data: n_eval training images vs the set, or fresh points vs fresh points."""
        if self._ref_stats is not None:
            pick = torch.randperm(len(self.reference), generator=torch.Generator().manual_seed(0))
            return self(self.reference[pick[:self.n_eval]])
        return self(self.reference[self.n_eval:])
