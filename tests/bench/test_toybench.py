"""The toy benchmark core on a smoke configuration: records, summary statistics, report, picture."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qac.bench.toybench import ToyBenchConfig, markdown_report, plot_trajectories, ratio, run_one, summarize

SMOKE = ToyBenchConfig(datasets=("moons",), seeds=(0,), steps=30, batch_size=64, train_points=2000,
                       n_eval=150, lcfm_points=200, lcfm_ts=4, nfes=(1, 2), curvature_steps=(10,),
                       rk45_points=8, rk45_tol=1e-3)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    work = tmp_path_factory.mktemp("toybench")
    return work, [run_one(SMOKE, "moons", m, 0, work) for m in ("icfm", "qac")]


def test_run_one_records_are_finite_and_complete(records):
    _, rows = records
    base, qac = rows
    for r in rows:
        for key in ("lcfm", "curv10", "ed1", "ed2", "ed_floor", "rk45_nfe", "train_s"):
            assert math.isfinite(r[key]), key
        assert r["curv10"] >= 0 and r["rk45_nfe"] > 0 and abs(r["ed_floor"]) < 0.1
        assert r["rk45_nfe"] == pytest.approx(1 + 6 * (r["rk45_accepted"] + r["rk45_rejected"]))
    assert "perplexity" not in base and 1.0 <= qac["perplexity"] <= 16 and qac["codes_used"] >= 1


def test_summary_is_mean_and_sample_std():
    rows = [{"dataset": "d", "method": m, "seed": s, "x": v}
            for m, vals in (("icfm", [1.0, 2.0, 3.0]), ("qac", [0.5, 0.5, 0.8])) for s, v in enumerate(vals)]
    summ = summarize(rows)
    assert summ[("d", "icfm")]["x"] == pytest.approx((2.0, 1.0))
    assert summ[("d", "qac")]["x"][1] == pytest.approx(float(np.std([0.5, 0.5, 0.8], ddof=1)))
    r, s = ratio(summ, "d", "x")
    assert r == pytest.approx(0.6 / 2.0) and s > 0


def test_report_and_picture(records, tmp_path):
    work, rows = records
    md = markdown_report(rows, SMOKE, 12.0)
    assert "## moons" in md and "| icfm |" in md and "| qac |" in md and "QAC ÷ baseline" in md
    from qac.train.run import load_run

    runs = {f"moons/{m}": load_run(work / f"moons-{m}-s0", device="cpu") for m in ("icfm", "qac")}
    png = plot_trajectories(runs, tmp_path / "traj.png", num=5, steps=5)
    assert png.stat().st_size > 1000


@pytest.mark.parametrize("method", ["rne", "qac_rne", "vae"])
def test_new_conditions_train_and_evaluate(tmp_path, method):
    from dataclasses import replace

    from qac.bench.toybench import METHODS
    from qac.train.run import load_run

    rec = run_one(replace(SMOKE, beta=3.0), "moons", method, 0, tmp_path)
    for key in ("lcfm", "curv10", "ed1", "ed2", "rk45_nfe"):
        assert math.isfinite(rec[key]), key
    assert ("perplexity" in rec) == (method == "qac_rne")
    run = load_run(tmp_path / f"moons-{method}-s0")
    assert run.model.cond == METHODS[method] and run.model.beta == 3.0
