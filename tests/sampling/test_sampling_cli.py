"""CLI: ``qac solvers`` and ``qac bench-solvers``."""

from __future__ import annotations

from click.testing import CliRunner

from qac.cli import main
from qac.sampling import SOLVERS


def test_solvers_lists_every_solver():
    res = CliRunner().invoke(main, ["solvers"])
    assert res.exit_code == 0
    for name, e in SOLVERS.items():
        line = next(ln for ln in res.output.splitlines() if ln.startswith(name + " "))
        assert e.nfe_rule in line and str(e.order) in line


def test_bench_solvers_writes_table_and_plot(tmp_path):
    res = CliRunner().invoke(main, ["bench-solvers", "--nfe", "3,8", "--batch", "4", "--solvers",
                                    "euler,heun", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "gmm_solvers.md").read_text()
    heun = next(ln for ln in md.splitlines() if ln.startswith("| heun"))
    assert float(heun.split("|")[2]) > 0  # 3 NFE: 2 steps, the last to sigma = 0 as Euler (EDM's convention)
    assert (tmp_path / "gmm_solvers.png").stat().st_size > 1000


def test_bench_solvers_user_errors_exit_2():
    for args in (["--nfe", "a,b"], ["--nfe", "0"], ["--solvers", "nope"], ["--dim", "0"]):
        res = CliRunner().invoke(main, ["bench-solvers", *args])
        assert res.exit_code == 2 and "error:" in res.output, args


def test_bench_solvers_peer_grid_changes_the_grid_not_the_rule(tmp_path):
    poly = CliRunner().invoke(main, ["bench-solvers", "--nfe", "4,8", "--solvers", "dpmpp_2m,euler", "--batch", "4"])
    peer = CliRunner().invoke(main, ["bench-solvers", "--nfe", "4,8", "--solvers", "dpmpp_2m,euler", "--batch", "4",
                                     "--grid", "peer", "--out", str(tmp_path), "--no-plot"])
    assert poly.exit_code == 0 and peer.exit_code == 0, peer.output
    row = {line.split("|")[1].strip(): line for line in poly.output.splitlines() if line.startswith("| ")}
    prow = {line.split("|")[1].strip(): line for line in peer.output.splitlines() if line.startswith("| ")}
    assert row["euler"] == prow["euler"]          # Euler's peer grid is the same polynomial rho = 7 grid
    assert row["dpmpp_2m"] != prow["dpmpp_2m"]    # DPM-Solver++ moves to the logSNR grid
    assert "--grid peer" in (tmp_path / "gmm_solvers.md").read_text()
