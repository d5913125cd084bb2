"""CodeWeights: online EMA recurrence, offline histogram, per-seed sampling, statistics, persistence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qac.conditions import CodeWeights
from qac.errors import QACError


def test_ema_update_matches_numpy_recurrence():
    rng = np.random.default_rng(0)
    cw = CodeWeights(3, 2)  # 9 codes
    w = np.zeros(9)
    for step in range(30):
        idx = rng.integers(0, 9, size=rng.integers(1, 20))
        decay = 0.5 ** (1 / (step + 1))
        cw.update(torch.from_numpy(idx), decay)
        w = decay * w + (1 - decay) * np.bincount(idx, minlength=9)
    np.testing.assert_allclose(cw.weights.numpy(), w, rtol=1e-12, atol=0)
    assert cw.weights.dtype == torch.float64


def test_batch_counts_then_update_counts_equals_update():
    a, b = CodeWeights(2, 4), CodeWeights(2, 4)
    idx = torch.tensor([0, 3, 3, 15, 7])
    a.update(idx, 0.9)
    counts = b.batch_counts(idx[:2]) + b.batch_counts(idx[2:])  # e.g. two ranks all-reduced
    b.update_counts(counts, 0.9)
    assert torch.equal(a.weights, b.weights)


def test_offline_histogram_and_stats():
    cw = CodeWeights.from_indices(torch.tensor([1, 1, 2, 2, 5, 5]), 2, 3)
    assert cw.weights.tolist() == [0, 2, 2, 0, 0, 2, 0, 0]
    assert cw.num_used() == 3
    assert math.isclose(cw.perplexity(), 3.0, rel_tol=1e-12)
    assert math.isclose(cw.entropy(), math.log(3), rel_tol=1e-12)
    idx, p = cw.topk(2)
    assert p.tolist() == pytest.approx([1 / 3, 1 / 3]) and set(idx.tolist()) <= {1, 2, 5}
    assert cw.stats()["used"] == 3.0


def test_zero_weights_raise_user_error():
    cw = CodeWeights(2, 3)
    with pytest.raises(QACError):
        cw.sample(seeds=[0])
    assert cw.num_used() == 0 and cw.stats()["perplexity"] == 0.0


def test_per_seed_sampling_is_independent_of_batch():
    seen = torch.randint(0, 64, (500,), generator=torch.Generator().manual_seed(0))
    cw = CodeWeights.from_indices(seen, 2, 6)
    full = cw.sample(seeds=list(range(20)))
    alone = torch.cat([cw.sample(seeds=[s]) for s in reversed(range(20))]).flip(0)
    assert torch.equal(full, alone)
    assert torch.equal(cw.sample(seeds=[3, 7]), full[[3, 7]])
    idx, codes = cw.sample_codes(seeds=[3, 7])
    assert torch.equal(idx, full[[3, 7]]) and codes.shape == (2, 6)


def test_sampling_frequencies_match_probs():
    cw = CodeWeights(2, 3)
    cw.weights = torch.tensor([0.0, 1, 2, 3, 0, 4, 0, 10], dtype=torch.float64)
    n = 20000
    idx = cw.sample(n=n, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(idx, minlength=8).double()
    p = cw.probs()
    assert counts[p == 0].sum() == 0  # zero-weight codes are never drawn
    used = p > 0
    chi2 = float(((counts[used] - n * p[used]) ** 2 / (n * p[used])).sum())
    assert chi2 < 20.5  # chi-square with 4 dof: p-value ~ 4e-4
    seeded = torch.bincount(cw.sample(seeds=range(4000)), minlength=8).double()
    chi2s = float(((seeded[used] - 4000 * p[used]) ** 2 / (4000 * p[used])).sum())
    assert chi2s < 20.5


def test_uniform_over_used():
    cw = CodeWeights(2, 3)
    cw.weights = torch.tensor([0.0, 1, 0, 100, 0, 0, 0, 0.5], dtype=torch.float64)
    u = cw.uniform_over_used()
    assert u.probs().tolist() == pytest.approx([0, 1 / 3, 0, 1 / 3, 0, 0, 0, 1 / 3])
    assert u.uniform_over_used(0.2).num_used() == 3
    with pytest.raises(QACError):
        cw.uniform_over_used(0.99)


def test_large_codebook_and_state_round_trip():
    cw = CodeWeights(2, 20)
    assert cw.size == 2**20
    cw.update(torch.tensor([0, 2**20 - 1, 12345]), 0.0)
    assert set(cw.sample(seeds=range(50)).tolist()) <= {0, 2**20 - 1, 12345}
    state = cw.state_dict()
    assert set(state) == {"weights", "levels"}
    back = CodeWeights.from_state_dict(state)
    assert torch.equal(back.weights, cw.weights) and back.levels == [2] * 20
    with pytest.raises(QACError):
        CodeWeights(4, 10).load_state_dict(state)
    with pytest.raises(QACError):
        CodeWeights(2, 25)  # too many codes for dense weights


def test_code_draw_does_not_replay_the_noise_stream():
    from qac.util import seed_generator

    cw = CodeWeights(2, 20)
    cw.weights.fill_(1.0)  # uniform: index = floor(u * 2^20)
    seeds = list(range(8))
    drawn = cw.sample(seeds=seeds)
    plain = [torch.rand((), generator=seed_generator(s), dtype=torch.float64) for s in seeds]
    same_stream = [int(u * 2**20) for u in plain]
    assert all(a != b for a, b in zip(drawn.tolist(), same_stream))
