"""Figure 3: x0-predictions at every step, recorded, drawn and saved; ``qac sample --save-predictions/--compare``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import qac.safeio
from qac.cli import main
from qac.conditions import CodeWeights, index_to_codes
from qac.errors import QACError
from qac.eval.predictions import MAX_ROWS, check_comparable, check_request, record_predictions, save_predictions
from qac.model import ModelConfig, build_model
from qac.sampling.generate import generate
from qac.util import per_seed_randn


def _points_model(cond: str = "qac"):
    torch.manual_seed(1)
    return build_model(ModelConfig(arch="mlp", cond=cond, code_dim=3), "points", (2,))


def _weights() -> CodeWeights:
    w = CodeWeights(2, 3)
    w.update(torch.arange(8), decay=0.0)
    return w


@pytest.mark.parametrize("solver,opts", [("heun", {"steps": 4}), ("dpmpp_2m", {"nfe": 5}),
                                         ("rk45", {"steps": 3, "rtol": 1e-4, "atol": 1e-4})])
def test_predictions_are_the_denoiser_at_each_step_state(solver, opts):
    model, seeds = _points_model(), [3, 1, 4, 1, 5]
    kw = dict(code_weights=_weights(), solver=solver, batch_size=2, **opts)
    pred = record_predictions(model, seeds, name="qac", **kw)
    ref = generate(model, seeds, return_trajectory=True, **kw)  # x_k at every grid sigma, then the sample
    steps = len(pred.sigmas) - 1
    assert pred.predictions.shape == (steps + 1, 5, 2) and ref.trajectory.shape[0] == steps + 1
    torch.testing.assert_close(pred.samples, ref.samples, rtol=0, atol=0)  # last column = the returned samples
    assert pred.codes.tolist() == ref.indices.tolist()
    y_q = index_to_codes(ref.indices, 2, 3)
    with torch.no_grad():
        for k in range(steps):
            sigma = float(pred.sigmas[k])
            want = model(ref.trajectory[k].double(), torch.full((5,), sigma, dtype=torch.float64), y_q).float()
            torch.testing.assert_close(pred.predictions[k], want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pred.start.double(), per_seed_randn(seeds, (2,)).double() * 80.0)


def _image_runs(seeds):
    out = []
    for cond in ("none", "qac"):
        torch.manual_seed(2)
        model = build_model(ModelConfig(cond=cond, code_dim=3, model_channels=8), "image", (1, 8, 8))
        out.append(record_predictions(model, seeds, name=cond, code_weights=_weights() if cond == "qac" else None,
                                      solver="euler", steps=3))
    return out


def test_image_strips_and_npz_are_written_and_reloaded(tmp_path):
    runs = _image_runs([0, 7, 2])
    png, npz = save_predictions(runs, tmp_path, axis="sigma")
    z = np.load(npz)
    assert z["names"].tolist() == ["none", "qac"] and z["seeds"].tolist() == [0, 7, 2] and str(z["axis"]) == "sigma"
    for i, r in enumerate(runs):
        np.testing.assert_array_equal(z[f"predictions_{i}"], r.predictions.numpy())
        np.testing.assert_array_equal(z[f"sigmas_{i}"], r.sigmas.numpy())
        np.testing.assert_array_equal(z[f"codes_{i}"], r.codes.numpy())
    assert z["predictions_0"].shape == (4, 3, 1, 8, 8)
    np.testing.assert_array_equal(z["start_0"], z["start_1"])  # the same noise for both runs
    assert (z["codes_0"] == -1).all() and (z["codes_1"] >= 0).all()
    both = Image.open(png)
    one, _ = save_predictions(runs[:1], tmp_path, stem="one")
    single = Image.open(one)
    assert both.width == single.width and both.height > 2 * single.height - 20
    assert single.width >= 4 * 48 and single.height >= 3 * 48  # 4 columns, 3 rows of 48-pixel tiles
    assert len(np.unique(np.asarray(single))) > 10  # tiles drawn, not a blank page


def test_point_scatters_are_drawn(tmp_path):
    runs = [record_predictions(_points_model(c), range(50), name=c, code_weights=_weights() if c == "qac" else None,
                               solver="euler", steps=2) for c in ("none", "qac")]
    png, npz = save_predictions(runs, tmp_path, axis="t")
    img = np.asarray(Image.open(png))
    assert img.shape[1] >= 3 * 96 and (img != 255).any()
    assert np.load(npz)["predictions_1"].shape == (3, 50, 2)


def test_requests_that_cannot_be_drawn_are_refused(monkeypatch):
    with pytest.raises(QACError, match="at most 64 seeds"):
        check_request(MAX_ROWS + 1, (1, 8, 8), 19)
    check_request(1000, (2,), 19)  # points: one scatter per column, no row limit
    with pytest.raises(QACError, match="same data shape"):
        check_comparable({"a": (1, 8, 8), "b": (2,)})
    monkeypatch.setattr(qac.safeio, "available_memory", lambda: 1000.0)
    with pytest.raises(QACError, match="memory"):
        check_request(8, (1, 8, 8), 19)


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def runs(train_runs):
    small = ("--steps", "2", "--batch", "16")
    return train_runs("fig3", {"qac": ("--data", "digits", "--code-dim", "3", "--channels", "8", *small),
                               "base": ("--data", "digits", "--cond", "none", "--channels", "8", *small),
                               "toy": ("--data", "toy:moons:200", "--arch", "mlp", "--code-dim", "3", *small)})


def test_cli_compare_draws_both_runs_from_the_same_noise(runs, tmp_path):
    res = _run("sample", "--run", runs["qac"], "--compare", runs["base"], "--seeds", "0-3", "--solver", "euler",
               "--steps", "3", "--out", tmp_path)  # --compare implies --save-predictions
    assert res.exit_code == 0, res.output
    assert "predictions.png" in res.output
    z, s = np.load(tmp_path / "predictions.npz"), np.load(tmp_path / "samples.npz")
    assert z["names"].tolist() == ["qac", "base"] and z["seeds"].tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(z["start_0"], z["start_1"])
    np.testing.assert_allclose(z["start_0"], 80.0 * per_seed_randn(range(4), (1, 8, 8)).numpy(), rtol=1e-6)
    last = torch.from_numpy(z["predictions_0"][-1])
    np.testing.assert_array_equal((last * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy(),
                                  s["samples"])  # the last column is what samples.npz holds
    np.testing.assert_array_equal(z["codes_0"], s["codes"])
    assert (z["codes_1"] == -1).all() and z["predictions_1"].shape == (4, 4, 1, 8, 8)
    assert Image.open(tmp_path / "predictions.png").size[0] > 0


def test_cli_rk45_records_its_grid(runs, tmp_path):
    res = _run("sample", "--run", runs["toy"], "--save-predictions", "--seeds", "0-9", "--solver", "rk45",
               "--steps", "2", "--opt", "rtol=1e-3", "--opt", "atol=1e-3", "--out", tmp_path)
    assert res.exit_code == 0, res.output
    z = np.load(tmp_path / "predictions.npz")
    assert z["predictions_0"].shape == (3, 10, 2) and int(z["nfe_0"]) > 3
    np.testing.assert_allclose(z["predictions_0"][-1], np.load(tmp_path / "samples.npz")["samples"], atol=1e-6)


@pytest.mark.parametrize("args,needle", [
    (["--run", "{qac}", "--compare", "{toy}"], "same data shape"),
    (["--run", "{qac}", "--save-predictions", "--seeds", "0-64"], "at most 64 seeds"),
    (["--run", "{qac}", "--compare", "{base}", "--aligner", "{tmp}/a.json"], "--aligner"),
    (["--run", "{qac}", "--compare", "{tmp}/nothing"], "does not exist"),
])
def test_cli_bad_prediction_requests_exit_2(runs, tmp_path, args, needle):
    args = [a.format(tmp=tmp_path, **runs) for a in args]
    res = _run("sample", *args, "--steps", "2", "--out", tmp_path / "out")
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], res.output
    assert not (tmp_path / "out").exists()


def test_flow_predictions_are_labelled_with_t_and_start_from_pure_noise():
    torch.manual_seed(1)
    model = build_model(ModelConfig(arch="mlp", cond="none", formulation="rf"), "points", (2,))
    seeds = [0, 2, 5]
    pred = record_predictions(model, seeds, name="rf", solver="euler", steps=4, schedule="flow")
    assert pred.sigmas.tolist() == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
    torch.testing.assert_close(pred.start.double(), per_seed_randn(seeds, (2,)).double())  # x_1 = n
    with torch.no_grad():  # column 0: D = x_1 - 1 * v(x_1, 1)
        v = model.velocity(pred.start.double(), torch.ones(3, dtype=torch.float64), None).float()
    torch.testing.assert_close(pred.predictions[0], pred.start - v, rtol=1e-5, atol=1e-5)
