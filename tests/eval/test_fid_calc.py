"""``qac fid calc`` end to end: tiny 8x8 run, reference from ``qac fid ref``, TorchScript/proxy detectors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from qac.cli import main
from qac.eval.evaluate import fid_of_run
from qac.metrics.detectors import file_sha256
from qac.metrics.proxies import PixelDetector
from qac.metrics.stats import load_reference
from qac.train import ModelConfig, TrainConfig, train

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # tiny N, unverified detector


@pytest.fixture(scope="module")
def setup(tmp_path_factory, save_tiny_detector):
    """A tiny 8x8 grayscale run trained on a small npz, its FID reference and a TorchScript detector."""
    tmp = tmp_path_factory.mktemp("fidcalc")
    rng = np.random.default_rng(0)
    imgs = np.zeros((64, 8, 8, 1), np.uint8)
    imgs[:, 2:6, 2:6] = rng.integers(150, 256, size=(64, 1, 1, 1))  # bright squares on black
    data = tmp / "imgs.npz"
    np.savez(data, x=imgs)
    cfg = TrainConfig(data=str(data), model=ModelConfig(arch="digits", cond="qac", levels=2, code_dim=2,
                                                        model_channels=8),
                      steps=4, batch_size=8, lr_warmup_steps=1, grid_every=10**9, snapshot_every=10**9,
                      log_every=10**9, device="cpu")
    train(cfg, tmp / "run", progress=False)
    det = save_tiny_detector(tmp / "tiny.pt")
    ref = tmp / "ref.npz"
    res = CliRunner().invoke(main, ["fid", "ref", "--data", str(data), "--out", str(ref),
                                    "--detector", str(det), "--no-progress"])
    assert res.exit_code == 0, res.output
    pref = tmp / "pref.npz"
    res = CliRunner().invoke(main, ["fid", "ref", "--data", str(data), "--out", str(pref),
                                    "--proxy", "pixel_fd", "--no-progress"])
    assert res.exit_code == 0, res.output
    return {"tmp": tmp, "run": tmp / "run", "det": det, "ref": ref, "pref": pref, "data": data}


def _calc(s, *extra):
    return CliRunner().invoke(main, ["fid", "calc", "--run", str(s["run"]), "--solver", "euler", "--nfe", "2",
                                     "--num", "12", "--batch", "5", "--device", "cpu", "--no-progress",
                                     *extra])


def test_fid_calc_end_to_end_matches_direct_statistics(setup):
    out = setup["tmp"] / "fid.json"
    res = _calc(setup, "--ref", str(setup["ref"]), "--detector", str(setup["det"]), "--seeds-start", "3",
                "--json", str(out))
    assert res.exit_code == 0, res.output
    assert res.output.startswith("fid = ") and "proxy" not in res.output
    rec = json.loads(out.read_text())
    r = rec["result"]
    assert r["n"] == 12 and r["seeds"] == "3-14" and r["metric"] == "fid" and rec["nfe"] == 2
    assert r["detector_sha256"] == file_sha256(setup["det"]) and r["protocol"].startswith("unverified-")
    assert r["comparable_to_published"] is False and rec["is_proxy"] is False
    # independent check: generate the same seeds, compute the Fréchet distance by hand
    from qac.metrics.frechet import frechet_distance
    from qac.sampling.generate import generate
    from qac.train.run import load_run

    run = load_run(setup["run"], device="cpu")
    x = generate(run.model, range(3, 15), code_weights=run.code_weights(), solver="euler", nfe=2).samples
    u8 = (x.clamp(-1, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).float() / 255.0
    mean, std = u8.mean(dim=(2, 3)).double().numpy(), u8.std(dim=(2, 3)).double().numpy()
    feats = np.concatenate([np.repeat(mean, 3, 1), np.repeat(std, 3, 1)], 1)  # gray -> RGB in the detector
    ref = load_reference(setup["ref"])
    want = frechet_distance(feats.mean(0), np.cov(feats, rowvar=False), ref.mu, ref.sigma)
    assert abs(r["value"] - want) < 1e-4 * max(1.0, abs(want))


def test_fid_calc_batch_size_does_not_change_the_number(setup):
    a = fid_of_run(setup["run"], setup["pref"], PixelDetector(), solver="euler", nfe=2, num=10, batch_size=10,
                   progress=False)
    b = fid_of_run(setup["run"], setup["pref"], PixelDetector(), solver="euler", nfe=2, num=10, batch_size=3,
                   progress=False)
    assert a.metric == "proxy_pixel_fd" and a.is_proxy
    assert a.value == pytest.approx(b.value, rel=1e-6, abs=1e-9)


def test_fid_calc_proxy_is_named_proxy(setup):
    out = setup["tmp"] / "proxy.json"
    res = _calc(setup, "--ref", str(setup["pref"]), "--proxy", "pixel_fd", "--json", str(out))
    assert res.exit_code == 0, res.output
    assert res.output.startswith("proxy_pixel_fd = ") and "NOT FID" in res.output
    rec = json.loads(out.read_text())
    assert rec["metric"] == rec["result"]["metric"] == "proxy_pixel_fd" and rec["is_proxy"] is True


def test_fid_calc_user_errors_are_one_line(setup, monkeypatch, tmp_path):
    from qac.metrics import detectors

    monkeypatch.delenv(detectors.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(detectors, "fid_helper_file", lambda: None)
    monkeypatch.setattr(detectors, "_known_caches", lambda env: [])
    cases = [
        (["--ref", str(tmp_path / "missing.npz"), "--detector", str(setup["det"])], "not found"),
        (["--ref", str(setup["ref"])], "--detector PATH"),  # no detector anywhere
        (["--ref", str(setup["ref"]), "--proxy", "pixel_fd"], "the detector gives"),  # FID ref, proxy
    ]
    for extra, text in cases:
        res = _calc(setup, *extra)
        assert res.exit_code == 2, res.output
        assert text in res.output and "Traceback" not in res.output
        assert len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(main, ["fid", "calc", "--run", str(setup["run"]), "--ref", str(setup["ref"]),
                                    "--detector", str(setup["det"]), "--solver", "heun", "--nfe", "3",
                                    "--schedule", "flow", "--num", "4", "--device", "cpu", "--no-progress"])
    assert res.exit_code == 2 and "for rf models" in res.output
