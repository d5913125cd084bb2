"""FD, KID, streaming statistics and reference files against closed forms / independent computations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg
import torch

from qac.errors import QACError
from qac.metrics.frechet import FIDResult, check_sample_size, frechet_distance, kid
from qac.metrics.stats import FeatureStats, load_reference, save_reference


def test_fd_diagonal_gaussians_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-12)


def test_fd_full_covariance_matches_scipy_sqrtm():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(20, 20)), rng.normal(size=(20, 20))
    s1, s2 = a @ a.T + 0.1 * np.eye(20), b @ b.T + 0.1 * np.eye(20)
    mu1, mu2 = rng.normal(size=20), rng.normal(size=20)
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("n", [8, 50])
def test_fd_identical_rank_deficient_is_zero(n):
    x = np.random.default_rng(2).uniform(-1, 1, size=(n, 512))
    st = FeatureStats(512)
    st.update(x)
    mu, sigma = st.mean(), st.cov()
    assert np.linalg.matrix_rank(sigma) < 512
    value = frechet_distance(mu, sigma, mu, sigma)
    assert -1e-8 <= value < 1e-8


def test_fd_shape_mismatch_is_user_error():
    with pytest.raises(QACError, match="do not match"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_streaming_equals_one_shot_numpy():
    x = np.random.default_rng(3).normal(2.0, 1.5, size=(301, 7))
    st = FeatureStats(7)
    for i in range(0, 301, 37):
        st.update(torch.from_numpy(x[i:i + 37]).float())
    x32 = x.astype(np.float32).astype(np.float64)
    assert st.n == 301
    np.testing.assert_allclose(st.mean(), x32.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(st.cov(), np.cov(x32, rowvar=False), rtol=1e-10, atol=1e-12)


def test_merge_and_summed_state_equal_joint():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(40, 5)), rng.normal(1.0, 2.0, size=(25, 5))
    joint = FeatureStats(5)
    joint.update(np.concatenate([x, y]))
    a, b = FeatureStats(5), FeatureStats(5)
    a.update(x)
    b.update(y)
    # an all-reduce by sum over two "ranks"
    summed = {k: a.state_dict()[k] + b.state_dict()[k] for k in ("n", "sum", "outer")}
    via_state = FeatureStats.from_state(summed)
    merged = a.merge(b)
    for st in (merged, via_state):
        assert st.n == 65
        np.testing.assert_allclose(st.mean(), joint.mean(), rtol=1e-13)
        np.testing.assert_allclose(st.cov(), joint.cov(), rtol=1e-12, atol=1e-14)


def test_reservoir_is_bounded_uniform_subset_and_merges():
    x = np.arange(1000, dtype=np.float32)[:, None]
    st = FeatureStats(1, keep=100, seed=0)
    for i in range(0, 1000, 64):
        st.update(x[i:i + 64])
    kept = st.kept()[:, 0]
    assert kept.shape == (100,) and len(set(kept.tolist())) == 100
    assert 350 < kept.mean() < 650  # uniform over 0..999, not the first 100 items
    other = FeatureStats(1, keep=100, seed=1)
    other.update(x + 1000)
    merged = st.merge(other).kept()[:, 0]
    assert merged.shape == (100,) and 20 < (merged >= 1000).sum() < 80
    no_reservoir = FeatureStats(1)
    no_reservoir.update(x)
    with pytest.raises(ValueError, match="reservoir"):
        st.merge(no_reservoir)


def test_kid_zero_for_same_distribution_positive_for_shift():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(600, 16)), rng.normal(size=(600, 16))
    same = kid(a, b, subsets=20, subset_size=300, seed=0)
    shifted = kid(a, b + 0.5, subsets=20, subset_size=300, seed=0)
    assert abs(same.value) < 3 * same.std / np.sqrt(20) + 1e-3
    assert shifted.value > 20 * abs(same.value) and shifted.value > 0.05
    assert same.to_dict()["metric"] == "kid" and same.subset_size == 300


def test_kid_matches_explicit_unbiased_mmd_on_full_sets():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(30, 4)), rng.normal(0.3, 1.0, size=(30, 4))
    k = lambda p, q: (p @ q.T / 4 + 1) ** 3
    m = 30
    expected = sum(k(x[i:i + 1], x[j:j + 1])[0, 0] + k(y[i:i + 1], y[j:j + 1])[0, 0]
                   for i in range(m) for j in range(m) if i != j) / (m * (m - 1)) - 2 * k(x, y).mean()
    # with subset_size == N every subset is a permutation of the full sets
    assert kid(x, y, subsets=3, subset_size=30).value == pytest.approx(expected, rel=1e-10)


def test_reference_roundtrip_and_edm_files(tmp_path):
    mu, sigma = np.arange(3.0), np.diag([1.0, 2.0, 3.0])
    meta = {"n": 10, "detector_sha256": "ab" * 32, "protocol": "edm", "dataset": "x.zip"}
    save_reference(tmp_path / "ref.npz", mu, sigma, meta)
    ref = load_reference(tmp_path / "ref.npz")
    np.testing.assert_array_equal(ref.mu, mu)
    np.testing.assert_array_equal(ref.sigma, sigma)
    assert ref.meta == meta and ref.n == 10
    with np.load(tmp_path / "ref.npz", allow_pickle=False) as z:  # EDM reads mu/sigma only
        assert set(z.files) == {"mu", "sigma", "meta"} and json.loads(str(z["meta"]))["protocol"] == "edm"
    assert ref.features is None
    feats = np.arange(6, dtype=np.float32).reshape(2, 3)
    save_reference(tmp_path / "ref_kid.npz", mu, sigma, meta, features=feats)
    np.testing.assert_array_equal(load_reference(tmp_path / "ref_kid.npz").features, feats)
    np.savez(tmp_path / "edm.npz", mu=mu, sigma=sigma)  # an EDM-published file has no metadata
    assert load_reference(tmp_path / "edm.npz").meta == {}
    np.savez(tmp_path / "bad.npz", mean=mu)
    with pytest.raises(QACError, match="keys mu and sigma"):
        load_reference(tmp_path / "bad.npz")
    with pytest.raises(QACError, match="not found"):
        load_reference(tmp_path / "missing.npz")


def test_small_sample_warning_and_result_dict():
    with pytest.warns(UserWarning, match="rank-deficient"):
        assert check_sample_size(100) is True
    assert check_sample_size(5000) is False
    r = FIDResult(1.5, 100, 50000, "0-99", "ab", "edm", small_sample=True)
    assert r.to_dict() == {"value": 1.5, "n": 100, "n_ref": 50000, "seeds": "0-99", "detector_sha256": "ab",
                           "protocol": "edm", "metric": "fid", "small_sample": True,
                           "comparable_to_published": False, "kid": None, "kid_std": None}
