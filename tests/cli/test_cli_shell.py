"""The CLI shell: lazy commands (``qac --help`` without torch), one ``error:`` line for every usage error,
one list parameter type, and the lazy ``import qac`` facade."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

import qac
from qac.cli import COMMANDS, main
from qac.cli.params import NumberList


def test_help_lists_every_command_without_importing_torch():
    code = ("import sys\nfrom click.testing import CliRunner\nfrom qac.cli import main\n"
            "r = CliRunner().invoke(main, ['--help'])\nprint(r.output)\n"
            "assert 'torch' not in sys.modules, 'qac --help imported torch'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for name in COMMANDS:
        assert name in proc.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_table_entry_resolves_to_a_click_command(name):
    import click

    cmd = main.get_command(None, name)
    assert isinstance(cmd, click.Command)
    assert CliRunner().invoke(main, [name, "--help"]).exit_code == 0


@pytest.mark.parametrize("args", [
    ["nosuch"],
    ["sample"],                                   # missing required --run
    ["sample", "--run", "x", "--batch", "many"],  # not an int
    ["train", "--bogus-option"],
    ["solvers", "extra"],
    ["fid", "nosuch"],
])
def test_usage_errors_are_one_error_line_with_exit_2(args):
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output


@pytest.mark.parametrize("text,expected", [
    ("0-3", [0, 1, 2, 3]), ("1,5,9", [1, 5, 9]), ("0-2, 7", [0, 1, 2, 7]), ("4", [4]),
])
def test_number_list_parses_ranges_and_lists(text, expected):
    assert NumberList().convert(text, None, None) == expected


@pytest.mark.parametrize("kind,text,needle", [
    (NumberList(), "9-1", "backwards"),
    (NumberList(), "-1", "minimum"),
    (NumberList(), "x", "not a range or an integer"),
    (NumberList(), "", "empty"),
    (NumberList(), f"0-{2**63}", "maximum"),
    (NumberList(max_count=100), "0-200000000", "at most 100"),
    (NumberList(int, minimum=1, ranges=False), "0", "minimum"),
    (NumberList(float, ranges=False, minimum=None), "0.5,x", "not a number"),
])
def test_number_list_refuses_bad_lists(kind, text, needle):
    import click

    with pytest.raises(click.BadParameter, match=needle):
        kind.convert(text, None, None)


def test_package_facade_offers_entry_points_lazily():
    proc = subprocess.run([sys.executable, "-c", "import sys, qac; assert 'torch' not in sys.modules; "
                           "print(sorted(n for n in ('train','load_run','generate','sample') if n in dir(qac)))"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "generate" in proc.stdout
    from qac.sampling.generate import generate
    from qac.train.run import load_run

    assert qac.generate is generate and qac.load_run is load_run and callable(qac.train) and callable(qac.sample)
    with pytest.raises(AttributeError):
        qac.no_such_thing  # noqa: B018
