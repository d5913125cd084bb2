"""``qac fid ref`` through click's runner, on a small .npz image set."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from qac.cli import main
from qac.metrics.detectors import file_sha256
from qac.metrics.stats import load_reference


@pytest.fixture
def data_npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "imgs.npz"
    np.savez(path, x=rng.integers(0, 256, size=(40, 16, 16, 3), dtype=np.uint8))
    return path


@pytest.fixture(autouse=True)
def _no_env_detector(monkeypatch, tmp_path):
    from qac.metrics import detectors

    monkeypatch.delenv(detectors.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(detectors, "fid_helper_file", lambda: None)
    monkeypatch.setattr(detectors, "_known_caches", lambda env: [])


def test_fid_ref_with_detector_file(tmp_path, data_npz, save_tiny_detector):
    det = save_tiny_detector(tmp_path / "tiny.pt")
    out = tmp_path / "ref.npz"
    res = CliRunner().invoke(main, ["fid", "ref", "--data", str(data_npz), "--out", str(out),
                                    "--detector", str(det), "--batch", "16", "--no-progress"])
    assert res.exit_code == 0, res.output
    ref = load_reference(out)
    assert ref.mu.shape == (6,) and ref.sigma.shape == (6, 6)
    assert ref.meta["n"] == 40 and ref.meta["detector_sha256"] == file_sha256(det)
    assert ref.meta["metric"] == "fid" and ref.meta["resolution"] == 16
    # mu equals the per-channel mean of the images (the tiny detector's first 3 features)
    with np.load(data_npz) as z:
        x = z["x"].astype(np.float64) / 255.0
    np.testing.assert_allclose(ref.mu[:3], x.mean(axis=(0, 1, 2)), rtol=1e-6)


def test_fid_ref_without_detector_is_one_line_error(tmp_path, data_npz):
    res = CliRunner().invoke(main, ["fid", "ref", "--data", str(data_npz), "--out", str(tmp_path / "r.npz")])
    assert res.exit_code == 2
    assert "--detector PATH" in res.output and "--proxy" in res.output and "Traceback" not in res.output


def test_fid_ref_proxy(tmp_path, data_npz):
    out = tmp_path / "proxy.npz"
    res = CliRunner().invoke(main, ["fid", "ref", "--data", str(data_npz), "--out", str(out),
                                    "--proxy", "randconv_fd", "--proxy-seed", "3", "--keep-features", "10",
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    assert load_reference(out).features.shape == (10, 224)
    meta = load_reference(out).meta
    assert meta["metric"] == "proxy_randconv_fd" and "seed=3" in meta["protocol"]
    assert "proxy_randconv_fd reference" in res.output
