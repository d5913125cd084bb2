"""benchmarks/paper_tables.py end to end at ``--scale smoke``: every table writes its md/json with the expected
rows and columns (not the numbers); runs are reused across tables; ``--scale full`` prints commands."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from qac.bench.runs import cond_available
from qac.bench.tables import Claim, check_claim

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("paper_tables", ROOT / "benchmarks" / "paper_tables.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("paper_tables", mod)  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def _run(mod, monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["paper_tables.py", *args])
    mod.main()


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    mod = _module()
    work, out = tmp_path_factory.mktemp("work"), tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as mp:
        for n in (1, 2, 3, 4, 5):
            _run(mod, mp, "--table", str(n), "--scale", "smoke", "--workdir", str(work), "--out", str(out),
                 "--workers", "1")
    return mod, out


EXPECTED = {1: ["L_CFM", "curv10"], 2: ["heun@5", "heun@7", "rk45", "RK45 NFE", "codes > 1e-3"],
            3: ["heun@3", "heun@5"], 4: ["heun@3", "heun@5"], 5: ["euler@1", "euler@2", "heun@3", "heun@5"]}


@pytest.mark.slow
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_each_table_writes_rows_and_columns(tables, n):
    mod, out = tables
    md = (out / f"table{n}.md").read_text()
    saved = json.loads((out / f"table{n}.json").read_text())
    assert md.startswith(f"# Table {n}:") and "benchmarks/paper_tables.py --table" in md
    header = next(line for line in md.splitlines() if line.startswith("| row |"))
    assert "not in the text we have" in md and "FID" not in header
    for col in EXPECTED[n]:
        assert f" {col} |" in header
    sc = mod.SCALES["smoke"]
    plan = mod.table_plan(n, sc, None)
    for row in plan.rows:
        if cond_available(row.cond):
            recs = [r for r in saved["records"] if r["row"] == row.label]
            assert sorted(r["seed"] for r in recs) == sorted(sc.seeds * len(plan.tasks)), row.label
            assert all(c in r for r in recs for c in plan.columns if c not in ("codes_used", "perplexity")
                       or row.cond in ("qac", "qac+rne"))
            cell = row.label.replace("|", "\\|")  # |C| is escaped in a markdown cell
            assert f"| {cell} |" in md
        else:
            assert f"`--cond {row.cond}` is not available" in md
    assert saved["protocol"] == "flow" and saved["command"].startswith("OMP_NUM_THREADS=1")


@pytest.mark.slow
def test_table4_plot_and_runs_reused_across_tables(tables):
    _, out = tables
    assert (out / "table4.png").stat().st_size > 1000
    t5 = json.loads((out / "table5.json").read_text())["records"]
    assert t5 and all(r["reused"] for r in t5)  # Tab. 5's runs are Tab. 1's
    t1 = {(r["run"], r["seed"]) for r in json.loads((out / "table1.json").read_text())["records"]}
    assert {(r["run"], r["seed"]) for r in t5} == t1


def test_full_scale_prints_paper_commands(capsys, monkeypatch):
    mod = _module()
    _run(mod, monkeypatch, "--table", "5", "--scale", "full")
    text = capsys.readouterr().out
    assert "qac train" in text and "--formulation rf" in text and "--cond qac+rne" in text and "--beta 20" in text
    _run(mod, monkeypatch, "--table", "2", "--scale", "full")
    text = capsys.readouterr().out
    assert "qac collect" in text and "--codes offline" in text and "--solver rk45" in text


def test_claim_checks_follow_the_means():
    summ = {("d", "a"): {"x": (1.0, 0.1)}, ("d", "b"): {"x": (2.0, 0.1)}, ("d", "c"): {"x": (3.0, 0.1)}}
    assert check_claim(Claim("", "below", ("a", "b"), "x"), summ, "d").startswith("agrees")
    assert check_claim(Claim("", "below", ("b", "a"), "x"), summ, "d").startswith("**disagrees")
    assert check_claim(Claim("", "increasing", ("a", "b", "c"), "x"), summ, "d").startswith("agrees")
    assert check_claim(Claim("", "decreasing", ("a", "b", "c"), "x"), summ, "d").startswith("**disagrees")
    assert check_claim(Claim("", "best", ("a", "c", "b"), "x"), summ, "d").startswith("agrees")
    assert check_claim(Claim("", "all_below", ("a", "b", "c"), "x"), summ, "d").startswith("agrees")
    assert check_claim(Claim("", "below", ("a", "zz"), "x"), summ, "d").startswith("not measured")


def _parse_qac_command(line: str) -> None:
    """Parse one printed ``qac ...`` line with the real click commands (options, choices, types), no run."""
    import shlex
    import warnings

    import click

    from qac.cli import main

    args = shlex.split(line)[1:]
    cmd, ctx = main, main.make_context("qac", list(args), resilient_parsing=False)
    while isinstance(cmd, click.Group):
        with warnings.catch_warnings():  # click 8.2 moves the subcommand name from protected_args into args
            warnings.simplefilter("ignore", DeprecationWarning)
            tokens = [*ctx.protected_args, *ctx.args]
        name, sub, rest = cmd.resolve_command(ctx, tokens)
        cmd, ctx = sub, sub.make_context(name, rest, parent=ctx)


@pytest.mark.parametrize("table", [1, 2, 3, 4, 5])
def test_full_scale_commands_parse_with_the_cli(table, capsys, monkeypatch):
    _run(_module(), monkeypatch, "--table", str(table), "--scale", "full")
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("qac ")]
    assert lines
    for line in lines:
        _parse_qac_command(line)  # a misspelt option or a bad value raises click.UsageError


def test_a_broken_claim_says_whether_it_is_within_seed_noise():
    noisy = {("d", "a"): {"x": (1.0, 0.5)}, ("d", "b"): {"x": (0.9, 0.5)}, ("d", "c"): {"x": (0.1, 0.01)}}
    assert check_claim(Claim("", "decreasing", ("a", "b", "c"), "x"), noisy, "d").startswith("agrees")
    # a -> b breaks "increasing" by 0.1 < std 0.5; c -> a breaks "below" by 0.9 > both stds
    assert "within seed noise" in check_claim(Claim("", "increasing", ("b", "a"), "x"), {
        ("d", "a"): {"x": (0.9, 0.5)}, ("d", "b"): {"x": (1.0, 0.5)}}, "d")
    clear = check_claim(Claim("", "below", ("a", "c"), "x"), noisy, "d")
    assert clear.startswith("**disagrees** (") and "noise" not in clear
