"""The CLI as a user meets it: train -> sample -> collect -> info, and one-line errors with exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from qac.cli import main


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "toy"
    res = _run("train", "--data", "toy:8gaussians:2000", "--out", out, "--arch", "mlp", "--code-dim", "4",
               "--steps", "20", "--batch", "32", "--snapshot-every", "10", "--grid-every", "10", "--device", "cpu",
               "--no-progress")
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def digit_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits"
    res = _run("train", "--data", "digits", "--out", out, "--channels", "8", "--code-dim", "3", "--steps", "3",
               "--batch", "16", "--device", "cpu", "--no-progress")
    assert res.exit_code == 0, res.output
    return out


def test_train_writes_a_complete_run_folder(toy_run):
    names = {p.name for p in toy_run.iterdir()}
    assert {"config.json", "stats.jsonl", "checkpoint", "samples"} <= names
    assert json.loads((toy_run / "config.json").read_text())["model"]["code_dim"] == 4
    grids = sorted(p.name for p in (toy_run / "samples").iterdir())
    assert grids == ["grid-000010.png", "grid-000020.png"]
    assert Image.open(toy_run / "samples" / grids[0]).size[0] > 0


def test_sample_writes_npz_and_grid_reproducibly(toy_run, tmp_path):
    common = ("--solver", "dpmpp_2m", "--nfe", "4")
    a = _run("sample", "--run", toy_run, "--seeds", "0-9", *common, "--out", tmp_path / "a")
    b = _run("sample", "--run", toy_run, "--seeds", "5-9", *common, "--out", tmp_path / "b", "--batch", "2")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    za, zb = np.load(tmp_path / "a" / "samples.npz"), np.load(tmp_path / "b" / "samples.npz")
    assert za["samples"].shape == (10, 2) and int(za["nfe"]) == 4
    np.testing.assert_allclose(za["samples"][5:], zb["samples"], rtol=0, atol=1e-6)  # BLAS kernels vary by batch
    np.testing.assert_array_equal(za["codes"][5:], zb["codes"])
    assert (tmp_path / "a" / "grid.png").exists()


def test_sample_in_blocks_equals_one_call_and_caps_the_grid(digit_run, tmp_path, monkeypatch):
    """Seeds are generated in blocks and kept as uint8 block by block: the same samples.npz as one call; the
    grid shows the first GRID_MAX images."""
    import qac.cli.sample_cmds as sample_cmds

    common = ("--run", digit_run, "--seeds", "0-9", "--solver", "euler", "--nfe", "3", "--batch", "2")
    whole = _run("sample", *common, "--out", tmp_path / "whole")
    monkeypatch.setattr(sample_cmds, "SAMPLE_BLOCK", 3)
    monkeypatch.setattr(sample_cmds, "GRID_MAX", 4)
    blocks = _run("sample", *common, "--out", tmp_path / "blocks")
    assert whole.exit_code == 0 and blocks.exit_code == 0, whole.output + blocks.output
    za, zb = np.load(tmp_path / "whole" / "samples.npz"), np.load(tmp_path / "blocks" / "samples.npz")
    assert za["samples"].dtype == np.uint8 and za["samples"].shape == (10, 8, 8, 1)
    for key in ("samples", "codes", "seeds", "nfe"):
        np.testing.assert_array_equal(za[key], zb[key])
    assert "grid.png (the first 4)" in blocks.output and "grid.png (the first" not in whole.output
    assert Image.open(tmp_path / "blocks" / "grid.png").size < Image.open(tmp_path / "whole" / "grid.png").size


def test_collect_then_sample_with_offline_codes(toy_run, tmp_path):
    res = _run("collect", "--run", toy_run, "--no-progress", "--device", "cpu")
    assert res.exit_code == 0 and "offline code weights" in res.output
    assert (toy_run / "codes_offline.safetensors").exists()
    res = _run("sample", "--run", toy_run, "--seeds", "0-3", "--steps", "3", "--codes", "offline", "--out", tmp_path)
    assert res.exit_code == 0, res.output
    info = json.loads(_run("info", "--run", toy_run, "--json").output)
    assert info["codes_offline"]["used"] >= 1 and info["codes_offline"]["codebook"] == 16
    assert info["params"]["encoder"] > 0 and info["step"] == 20


def test_image_run_sampling_with_fixed_code_and_code_of_image(digit_run, tmp_path):
    res = _run("sample", "--run", digit_run, "--seeds", "0-3", "--steps", "2", "--code", "5", "--out", tmp_path / "a")
    assert res.exit_code == 0, res.output
    z = np.load(tmp_path / "a" / "samples.npz")
    assert z["samples"].dtype == np.uint8 and z["samples"].shape == (4, 8, 8, 1)
    assert z["codes"].tolist() == [5, 5, 5, 5]
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(tmp_path / "x.png")
    res = _run("sample", "--run", digit_run, "--seeds", "0-1", "--steps", "2", "--code-from", tmp_path / "x.png",
               "--out", tmp_path / "b")
    assert res.exit_code == 0, res.output
    codes = np.load(tmp_path / "b" / "samples.npz")["codes"]
    assert codes[0] == codes[1] and 0 <= codes[0] < 8


def test_info_on_the_cifar10_preset_counts_parameters():
    res = _run("info", "--arch", "cifar10", "--cond", "none", "--json")
    assert res.exit_code == 0, res.output
    assert abs(json.loads(res.output)["params"]["denoiser"] - 55_733_891) <= 0.01 * 55_733_891


@pytest.mark.parametrize("args,needle", [
    (["sample", "--run", "/nonexistent/run"], "does not exist"),
    (["sample", "--run", "{toy}", "--solver", "nope"], "unknown solver"),
    (["sample", "--run", "{toy}", "--solver", "ipndm", "--nfe", "3", "--schedule", "flow"], "runs solvers"),
    (["sample", "--run", "{toy}", "--solver", "heun", "--nfe", "3", "--schedule", "flow"], "for rf models"),
    (["sample", "--run", "{toy}", "--code", "999"], "code indices"),
    (["sample", "--run", "{toy}", "--seeds", "9-1"], "runs backwards"),
    (["train", "--out", "{toy}", "--data", "toy:moons"], "already holds a run"),
    (["train", "--out", "{tmp}/x", "--data", "toy:nothing"], "toy"),
    (["train", "--out", "{tmp}/x", "--data", "/no/such/folder"], "/no/such/folder"),
    (["train", "--out", "{tmp}/x", "--data", "toy:moons", "--arch", "digits"], "mlp"),
    (["train", "--out", "{tmp}/x", "--levels", "1"], "levels"),
    (["info"], "exactly one"),
    (["demo", "--nfe", "3,x"], "--nfe"),
])
def test_user_mistakes_give_one_line_and_exit_code_2(toy_run, tmp_path, args, needle):
    args = [a.format(toy=toy_run, tmp=tmp_path) for a in args]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    assert needle in res.output
    assert "Traceback" not in res.output
    err_lines = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(err_lines) == 1


def test_help_documents_defaults():
    res = _run("train", "--help")
    assert res.exit_code == 0 and "default: 2000" in res.output and "--resume" in res.output


def test_the_four_sampling_commands_share_one_set_of_options():
    """sample, fid calc, sweep and analyze take the same sampling options (one decorator)."""
    from qac.cli.sampling_opts import OPTION_NAMES

    for cmd in (["sample"], ["fid", "calc"], ["sweep"], ["analyze"]):
        res = CliRunner().invoke(main, [*cmd, "--help"])
        assert res.exit_code == 0, res.output
        for name in OPTION_NAMES:
            assert f"{name} " in res.output or f"{name}\n" in res.output, (cmd, name)
        assert "flow (rf" in res.output, cmd  # the schedule help names the rf protocol
