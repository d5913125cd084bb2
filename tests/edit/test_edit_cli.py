"""``qac edit`` end to end: files written and re-read, and every bad input as one error line, nothing written."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from qac.cli import main
from qac.edit.metrics import SSIM_MISSING, psnr, ssim, ssim_available


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _train(out, *extra):
    res = _run("train", "--data", "digits", "--out", out, "--channels", "8", "--code-dim", "3", "--steps", "2",
               "--batch", "8", "--device", "cpu", "--no-progress", "--grid-every", "100", *extra)
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {"qac": _train(root / "qac"), "base": _train(root / "base", "--cond", "none"),
            "px12": _train(root / "px12", "--resolution", "12")}


def test_edit_data_writes_and_rereads_its_files(runs, tmp_path):
    out = tmp_path / "o"
    res = _run("edit", "--run", runs["qac"], "--task", "inpaint-box", "--data", "digits", "--num", "3",
               "--seeds", "0-1", "--steps", "4", "--out", out, "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert len(list(out.glob("edit-*.png"))) == 3 and (out / "overview.png").exists()
    z = np.load(out / "edits.npz")
    assert z["inputs"].shape == (3, 8, 8, 1) and z["degraded"].shape == (3, 8, 8, 1)
    assert z["results"].shape == (3, 2, 8, 8, 1) and z["results"].dtype == np.uint8
    assert z["codes"].shape == (3, 2, 4) and (z["codes"] >= 0).all() and z["seeds"].tolist() == [0, 1]
    # the kept pixels of every result are the input's (uint8 round trip of the same float values)
    kept = np.ones((8, 8), bool)
    kept[2:6, 2:6] = False
    assert np.abs(z["results"][:, :, kept].astype(int) - z["inputs"][:, None, kept].astype(int)).max() <= 1
    m = json.loads((out / "metrics.json").read_text())
    assert m["task"] == "inpaint-box" and m["steps"] == 4 and m["calls_per_sample"] == {"denoiser": 4, "encoder": 4}
    assert m["kept_error"]["max"] < 1e-6
    import torch

    res_f = torch.from_numpy(z["results"]).permute(0, 1, 4, 2, 3).float() / 127.5 - 1
    ref_f = torch.from_numpy(z["inputs"]).permute(0, 3, 1, 2).float() / 127.5 - 1
    again = psnr(res_f.flatten(0, 1), ref_f.repeat_interleave(2, 0)).mean()
    assert abs(float(again) - m["psnr"]["mean"]) < 0.3  # same metric, up to uint8 rounding
    assert m["psnr"]["degraded_input"] < 100
    if ssim_available():
        assert -1 <= m["ssim"]["mean"] <= 1
    else:
        assert m["ssim"] is None and m["ssim_note"] == SSIM_MISSING


def test_edit_input_folder_and_degraded_input(runs, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.full((8, 8), 60 * i, np.uint8)).save(folder / f"a{i}.png")
    res = _run("edit", "--run", runs["base"], "--task", "sr2", "--input", folder, "--steps", "3", "--out",
               tmp_path / "o1")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "o1" / "metrics.json").read_text())["code"] == "none"
    Image.fromarray(np.full((4, 4), 200, np.uint8)).save(tmp_path / "low.png")
    res = _run("edit", "--run", runs["qac"], "--task", "sr2", "--input", tmp_path / "low.png", "--degraded-input",
               "--steps", "3", "--out", tmp_path / "o2")
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "o2" / "metrics.json").read_text())
    assert "psnr" not in m and m["kept_error"]["max"] < 1e-6
    z = np.load(tmp_path / "o2" / "edits.npz")
    assert z["inputs"].shape == (1, 8, 8, 1) and (z["degraded"] == 200).all()


def _bad(runs, tmp_path, *args):
    out = tmp_path / "never"
    res = _run("edit", *args, "--steps", "2", "--out", out)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), res.output
    assert not out.exists()
    return lines[0]


def test_bad_inputs_are_one_error_line_and_write_nothing(runs, tmp_path):
    q, b = runs["qac"], runs["base"]
    data = ("--data", "digits", "--num", "2")
    assert "not divisible" in _bad(runs, tmp_path, "--run", runs["px12"], "--task", "sr8", *data)
    assert "RGB" in _bad(runs, tmp_path, "--run", q, "--task", "colorize", *data)
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(tmp_path / "wide.png")
    assert "aspect ratio" in _bad(runs, tmp_path, "--run", q, "--task", "inpaint-mask", "--mask",
                                  tmp_path / "wide.png", *data)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "m.jpg")
    assert "not a PNG" in _bad(runs, tmp_path, "--run", q, "--task", "inpaint-mask", "--mask", tmp_path / "m.jpg",
                               *data)
    assert "this run has none" in _bad(runs, tmp_path, "--run", b, "--task", "sr2", "--code", "adaptive", *data)
    (tmp_path / "junk.png").write_bytes(b"\x89PNG but not really")
    assert "cannot read image" in _bad(runs, tmp_path, "--run", q, "--task", "sr2", "--input", tmp_path / "junk.png")
    (tmp_path / "empty").mkdir()
    assert "no images" in _bad(runs, tmp_path, "--run", q, "--task", "sr2", "--input", tmp_path / "empty")
    assert "exactly one" in _bad(runs, tmp_path, "--run", q, "--task", "sr2")
    assert "unknown editing task" in _bad(runs, tmp_path, "--run", q, "--task", "sr3", *data)
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(tmp_path / "big.png")
    assert "9x9" in _bad(runs, tmp_path, "--run", q, "--task", "sr2", "--input", tmp_path / "big.png")


def test_ssim_missing_gives_a_clear_message(monkeypatch):
    import torch

    from qac.errors import QACError

    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.metrics", None)
    assert not ssim_available()
    with pytest.raises(QACError, match="scikit-image"):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


def test_ssim_against_a_hand_computation():
    pytest.importorskip("skimage")
    import torch

    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert torch.allclose(ssim(x, x), torch.ones(2))
    # constant images: SSIM reduces to the luminance term (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)
    a, b = torch.full((1, 1, 8, 8), 0.5), torch.full((1, 1, 8, 8), -0.5)
    c1 = (0.01 * 2) ** 2
    expected = (2 * 0.5 * -0.5 + c1) / (0.25 + 0.25 + c1)
    assert abs(float(ssim(a, b)[0]) - expected) < 1e-6
