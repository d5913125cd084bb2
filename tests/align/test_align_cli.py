"""``qac align`` and ``--aligner`` on sample / sweep: files written, used, and refused with one error line."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from qac.cli import main


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def runs(train_runs):
    return train_runs("alruns", {
        "img": ("--data", "digits", "--channels", "8", "--code-dim", "3", "--steps", "3", "--batch", "16"),
        "toy": ("--data", "toy:8gaussians:500", "--arch", "mlp", "--cond", "none", "--steps", "3", "--batch", "32")})


_SMALL = ("--pool", "24", "--val", "8", "--iters", "2", "--batch", "8", "--device", "cpu", "--no-progress")


def test_align_writes_file_and_plot_and_sample_uses_it(runs, tmp_path):
    al = tmp_path / "a.json"
    res = _run("align", "--run", runs["img"], "--solver", "ipndm", "--nfe", "3", "--afs", "--mode", "embed",
               "--loss", "tm", "--qsched", "--out", al, *_SMALL)
    assert res.exit_code == 0, res.output
    d = json.loads(al.read_text())
    assert d["solver"] == "ipndm" and d["nfe"] == 3 and d["afs"] is True and d["mode"] == "embed"
    assert len(d["delta"]) == 3 and len(d["out_scale"]) == 3 and len(d["state_scale"]) == 3
    assert d["target"]["kind"] == "run" and len(d["target"]["weights_sha256"]) == 64
    assert (tmp_path / "a.png").stat().st_size > 1000
    common = ("--run", runs["img"], "--seeds", "0-3", "--solver", "ipndm", "--afs", "--device", "cpu")
    a = _run("sample", *common, "--aligner", al, "--out", tmp_path / "s_al")
    b = _run("sample", *common, "--nfe", "3", "--out", tmp_path / "s_plain")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    za, zb = np.load(tmp_path / "s_al" / "samples.npz"), np.load(tmp_path / "s_plain" / "samples.npz")
    assert int(za["nfe"]) == 3 and za["samples"].shape == zb["samples"].shape


@pytest.mark.parametrize("args,match", [
    (["--solver", "rk45", "--nfe", "3"], "no fixed evaluation count"),
    (["--solver", "heun", "--nfe", "3"], "exactly 3"),
    (["--solver", "edm_sde", "--nfe", "4"], "stochastic"),
    (["--solver", "euler", "--nfe", "3", "--no-delta"], "nothing to learn"),
])
def test_align_user_errors_are_one_line(runs, tmp_path, args, match):
    res = _run("align", "--run", runs["toy"], *args, "--out", tmp_path / "x.json", *_SMALL)
    assert res.exit_code == 2 and match in res.output and "Traceback" not in res.output
    assert res.output.count("error:") == 1


def test_sample_refuses_another_run_solver_or_nfe(runs, tmp_path):
    al = tmp_path / "toy.json"
    assert _run("align", "--run", runs["toy"], "--solver", "euler", "--nfe", "3", "--out", al, *_SMALL).exit_code == 0
    base = ("--seeds", "0-1", "--device", "cpu", "--aligner", al, "--out", tmp_path / "o")
    for args, match in ((["--run", runs["img"], "--solver", "euler"], "trained for run"),
                        (["--run", runs["toy"], "--solver", "heun"], "solver"),
                        (["--run", runs["toy"], "--solver", "euler", "--nfe", "4"], "nfe"),
                        (["--run", runs["toy"], "--solver", "euler", "--steps", "3"], "not --steps")):
        res = _run("sample", *args, *base)
        assert res.exit_code == 2 and match in res.output, (args, res.output)
    assert _run("sample", "--run", runs["toy"], "--solver", "euler", *base).exit_code == 0


def test_sweep_with_aligner_files(runs, tmp_path):
    al = tmp_path / "toy.json"
    assert _run("align", "--run", runs["toy"], "--solver", "euler", "--nfe", "3", "--out", al, *_SMALL).exit_code == 0
    out = tmp_path / "sw"
    res = _run("sweep", "--run", runs["toy"], "--solver", "euler", "--nfe", "2,3", "--metric", "energy", "--num", "50",
               "--aligner", al, "--out", out, "--device", "cpu", "--no-progress")
    assert res.exit_code == 0, res.output
    with open(out / "sweep.csv") as fh:
        rows = {int(r["nfe"]): r["aligned"] for r in csv.DictReader(fh)}
    assert rows == {2: "False", 3: "True"}
    assert "euler +aligner" in (out / "sweep.md").read_text()
    bad = _run("sweep", "--run", runs["img"], "--solver", "euler", "--nfe", "3", "--metric", "energy", "--num", "8",
               "--aligner", al, "--out", tmp_path / "sw2", "--device", "cpu", "--no-progress")
    assert bad.exit_code == 2 and "none of the given runs" in bad.output


def test_sweep_aligns_missing_points_on_the_fly_and_saves_them(runs, tmp_path):
    from qac.align import AlignConfig, Aligner, sweep_factories
    from qac.train.run import load_run

    run = load_run(runs["toy"], device="cpu")
    lookup = sweep_factories([run], align_cfg=AlignConfig(pool=24, val=8, iters=2, batch=8), save_dir=tmp_path)
    assert lookup(run, "dpmpp_2m", 3, False) is not None
    saved = Aligner.load(tmp_path / "toy-dpmpp_2m-nfe3.json")
    assert saved.plan.solver == "dpmpp_2m" and saved.plan.nfe == 3
    assert sweep_factories([run])(run, "euler", 3, False) is None


def test_fid_calc_uses_an_aligner_and_refuses_a_mismatch(runs, tmp_path):
    ref = tmp_path / "ref.npz"
    r = _run("fid", "ref", "--data", "digits", "--max-items", "64", "--proxy", "pixel_fd", "--out", ref,
             "--no-progress")
    assert r.exit_code == 0, r.output
    al = tmp_path / "img.json"
    assert _run("align", "--run", runs["img"], "--solver", "euler", "--nfe", "3", "--out", al, *_SMALL).exit_code == 0
    common = ("fid", "calc", "--run", runs["img"], "--ref", ref, "--proxy", "pixel_fd", "--num", "16",
              "--device", "cpu", "--no-progress", "--aligner", al)
    ok = _run(*common, "--solver", "euler")
    assert ok.exit_code == 0 and "NFE=3" in ok.output and "aligned" in ok.output, ok.output
    bad = _run(*common, "--solver", "euler", "--nfe", "5")
    assert bad.exit_code == 2 and "nfe" in bad.output
