"""``qac analyze`` and ``qac sweep`` on tiny toy runs (and a tiny 8x8 image run for proxies)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import qac.cli.eval_cmds  # noqa: F401  (attaches analyze and sweep)
from qac.cli import main
from qac.eval.analysis import analyze_run, rf_uniform_sigmas, trajectory_curvature
from qac.eval.sweep import resolve_metric, sweep
from qac.train import ModelConfig, TrainConfig, train

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # tiny sample sizes


def _toy_run(path, cond: str, steps: int = 60):
    model = ModelConfig(arch="mlp", formulation="rf", cond=cond, levels=2, code_dim=2, model_channels=32)
    cfg = TrainConfig(data="toy:moons:2000", model=model,
                      steps=steps, batch_size=64, lr_warmup_steps=5, grid_every=10**9, snapshot_every=10**9,
                      log_every=10**9, device="cpu")
    train(cfg, path, progress=False)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evalruns")
    rng = np.random.default_rng(1)
    imgs = np.zeros((32, 8, 8, 1), np.uint8)
    imgs[:, 1:7, 3:5] = rng.integers(120, 256, size=(32, 1, 1, 1))
    np.savez(tmp / "imgs.npz", x=imgs)
    img_cfg = TrainConfig(data=str(tmp / "imgs.npz"),
                          model=ModelConfig(arch="digits", cond="none", model_channels=8),
                          steps=3, batch_size=8, lr_warmup_steps=1, grid_every=10**9, snapshot_every=10**9,
                          log_every=10**9, device="cpu")
    train(img_cfg, tmp / "img", progress=False)
    return {"tmp": tmp, "qac": _toy_run(tmp / "qac", "qac"), "base": _toy_run(tmp / "base", "none"),
            "img": tmp / "img", "npz": tmp / "imgs.npz"}


def test_rf_uniform_sigmas_are_uniform_in_t():
    s = torch.tensor(rf_uniform_sigmas(4, 999.0), dtype=torch.float64)
    t = s / (1 + s)
    assert s[-1] == 0 and torch.allclose(t[:-1] - t[1:], torch.full((4,), 0.999 / 4, dtype=torch.float64))


def test_analyze_lcfm_uses_each_points_own_code(runs):
    """QAC's L_CFM must bind E(x0) of each point: recomputing it by hand with the encoder agrees."""
    from qac.eval.evaluate import toy_reference
    from qac.metrics.cfm import cfm_loss_curve
    from qac.train.run import load_run

    run = load_run(runs["qac"], device="cpu")
    rep = analyze_run(run, num=300, ts=[0.3, 0.7], curvature_steps=20)
    x0 = toy_reference(run, 300, seed=12345)
    m = run.model
    by_hand = cfm_loss_curve(lambda x, s, xb: m(x, s, m.encode(xb)[0]), x0, [0.3, 0.7],
                             generator=torch.Generator().manual_seed(0))
    assert rep["lcfm"]["0.3"] == pytest.approx(by_hand[0.3], rel=1e-9)
    assert rep["lcfm"]["0.7"] == pytest.approx(by_hand[0.7], rel=1e-9)
    # a wrong (fixed) code gives a different number: the test can fail
    wrong = torch.zeros(1, m.code_dim)
    fixed = cfm_loss_curve(lambda x, s, xb: m(x, s, wrong.expand(len(xb), -1)), x0, [0.7],
                           generator=torch.Generator().manual_seed(0))
    assert fixed[0.7] != pytest.approx(by_hand[0.7], rel=1e-6)
    assert rep["conditional"] and rep["curvature"] >= 0 and math.isfinite(rep["lcfm_mean"])


def test_curvature_matches_straight_line_closed_form(runs):
    """The per-step deviation over the grid averages to the reported curvature (uniform grid)."""
    from qac.train.run import load_run

    cur = trajectory_curvature(load_run(runs["base"], device="cpu"), range(50), steps=10)
    assert cur["trajectory"].shape == (11, 50, 2)
    assert cur["curvature"] == pytest.approx(float(np.mean(cur["per_step"])), rel=1e-6)


def test_analyze_cli_writes_json_and_png(runs, tmp_path):
    for key in ("qac", "base"):
        out = tmp_path / key
        res = CliRunner().invoke(main, ["analyze", "--run", str(runs[key]), "--out", str(out), "--num", "200",
                                        "--ts", "0.2,0.5,0.8", "--curvature-steps", "25", "--device", "cpu",
                                        "--no-progress"])
        assert res.exit_code == 0, res.output
        rep = json.loads((out / "analysis.json").read_text())
        assert set(rep["lcfm"]) == {"0.2", "0.5", "0.8"}
        assert all(math.isfinite(v) and v > 0 for v in rep["lcfm"].values())
        assert rep["curvature"] >= 0 and rep["curvature_steps"] == 25 and len(rep["curvature_per_step"]) == 25
        assert (out / "analysis.png").stat().st_size > 1000
    bad = CliRunner().invoke(main, ["analyze", "--run", str(runs["qac"]), "--ts", "0.5,1.5",
                                    "--device", "cpu"])
    assert bad.exit_code == 2 and "strictly inside (0, 1)" in bad.output


def test_sweep_toy_rows_skips_and_outputs(runs, tmp_path):
    out = tmp_path / "sw"
    res = CliRunner().invoke(main, ["sweep", "--run", str(runs["qac"]), "--run", str(runs["base"]),
                                    "--solver", "euler,heun", "--nfe", "2,3", "--metric", "energy",
                                    "--num", "100", "--out", str(out), "--device", "cpu", "--no-progress"])
    assert res.exit_code == 0, res.output
    with open(out / "sweep.csv") as fh:
        rows = list(csv.DictReader(fh))
    # 2 runs x 2 solvers x 2 NFE = 8 pairs; rf runs sample on the rf protocol ('auto'), where heun spends
    # 2N - 1 evaluations: NFE 2 is impossible -> 2 skipped
    assert len(rows) == 6 and {r["metric"] for r in rows} == {"energy_distance"}
    assert {(r["run_name"], r["solver"], r["nfe"]) for r in rows} == {
        (n, s, k) for n in ("qac", "base") for s, k in
        (("euler", "2"), ("euler", "3"), ("heun", "3"))}
    assert all(r["floor"] != "" and r["schedule"] == "flow" for r in rows)
    md = (out / "sweep.md").read_text()
    assert "heun at NFE 2" in md and "—" in md and md.count("| qac |") == 2
    assert (out / "sweep.png").stat().st_size > 1000
    assert "skipped qac / heun at NFE 2" in res.output


def test_sweep_value_equals_direct_energy_distance(runs):
    from qac.eval.evaluate import toy_reference
    from qac.metrics.toy import toy_report
    from qac.sampling.generate import generate
    from qac.train.run import load_run

    run = load_run(runs["qac"], device="cpu")
    res = sweep([run], ["euler"], [4], "energy", num=80, seeds_start=5)
    g = generate(run.model, range(5, 85), code_weights=run.code_weights(), solver="euler", nfe=4, schedule="flow")
    want = toy_report(g.samples, toy_reference(run, 160), metrics=["energy_distance"])
    assert res.rows[0]["value"] == pytest.approx(want["energy_distance"], rel=1e-9)


def test_sweep_proxy_names_everywhere(runs, tmp_path):
    ref = tmp_path / "pref.npz"
    import qac.cli.fid_cmds  # noqa: F401

    r = CliRunner().invoke(main, ["fid", "ref", "--data", str(runs["npz"]), "--out", str(ref),
                                  "--proxy", "pixel_fd", "--no-progress"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "psw"
    res = CliRunner().invoke(main, ["sweep", "--run", str(runs["img"]), "--solver", "euler", "--nfe", "1,2",
                                    "--metric", "proxy_pixel_fd", "--ref", str(ref), "--num", "8",
                                    "--out", str(out), "--device", "cpu", "--no-progress"])
    assert res.exit_code == 0, res.output
    csv_text = (out / "sweep.csv").read_text()
    assert csv_text.count("proxy_pixel_fd") == 2 and "fid," not in csv_text
    js = json.loads((out / "sweep.json").read_text())
    assert js["metric"] == "proxy_pixel_fd" and js["is_proxy"] is True
    md = (out / "sweep.md").read_text()
    assert md.startswith("# proxy_pixel_fd (proxy, not FID) vs NFE")


def test_sweep_user_errors_are_one_line(runs, tmp_path):
    base = ["sweep", "--run", str(runs["img"]), "--solver", "euler", "--nfe", "2", "--num", "4",
            "--out", str(tmp_path / "e"), "--device", "cpu", "--no-progress"]
    cases = [
        (["--metric", "nope"], "unknown metric"),
        (["--metric", "fid"], "needs reference statistics"),
        (["--metric", "fid", "--ref", str(tmp_path / "missing.npz")], "not found"),
        (["--metric", "energy"], "is for points runs"),
        (["--metric", "proxy_pixel_fd"], "needs reference statistics"),
    ]
    for extra, text in cases:
        res = CliRunner().invoke(main, base + extra)
        assert res.exit_code == 2, res.output
        assert text in res.output and "Traceback" not in res.output
        assert len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(main, ["sweep", "--run", str(runs["qac"]), "--solver", "euler", "--nfe", "2",
                                    "--metric", "energy", "--out", str(tmp_path / "f"), "--solver", "rk45",
                                    "--device", "cpu"])
    assert res.exit_code == 2 and "adaptive" in res.output
    assert resolve_metric("ed") == "energy_distance"


def test_rf_curvature_uses_the_protocol_grid_from_t1(runs):
    """An rf run's curvature is RNE's estimator on Euler from x_1 = n on the uniform t grid (t_0 = 1)."""
    from qac.eval.analysis import trajectory_curvature
    from qac.metrics.trajectory import curvature
    from qac.sampling.generate import generate
    from qac.train.run import load_run

    run = load_run(runs["qac"], device="cpu")
    cur = trajectory_curvature(run, range(40), steps=8)
    assert cur["t"][0] == 1.0 and cur["t"][-1] == 0.0 and "flow" in cur["sampler"]
    g = generate(run.model, range(40), code_weights=run.code_weights(), solver="euler", steps=8, schedule="flow",
                 return_trajectory=True)
    assert g.trajectory[0].double().sub(per_seed_randn_like(40)).abs().max() < 1e-6  # starts at the noise itself
    assert cur["curvature"] == pytest.approx(float(curvature(g.trajectory.double(), g.times)), rel=1e-9)


def per_seed_randn_like(n: int) -> torch.Tensor:
    from qac.util import per_seed_randn

    return per_seed_randn(list(range(n)), (2,), dtype=torch.float64)
