"""The ``qac`` command line: one click group; each command is a thin layer over library calls.

Commands are listed in one table and imported only when run, so ``qac --help`` answers without importing
torch. User mistakes (:class:`qac.QACError`, and click's own usage errors) print one ``error:`` line on
stderr and exit with code 2.
"""

from __future__ import annotations

import importlib
import sys

import click

from qac import __version__
from qac.errors import QACError

# name -> (module, attribute, one-line help shown by ``qac --help``)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("qac.cli.train_cmds", "train", "Train a QAC model (Algorithm 1) or a baseline."),
    "collect": ("qac.cli.train_cmds", "collect", "Offline code weights: encode the training set."),
    "info": ("qac.cli.train_cmds", "info", "Config, parameter counts and code usage of a run or preset."),
    "demo": ("qac.cli.train_cmds", "demo", "Baseline vs QAC on digits, with a report."),
    "sample": ("qac.cli.sample_cmds", "sample", "Generate samples from a trained run."),
    "solvers": ("qac.cli.solver_cmds", "solvers_cmd", "List the samplers."),
    "bench-solvers": ("qac.cli.solver_cmds", "bench_solvers_cmd", "Error vs NFE on the exact GMM bench."),
    "fid": ("qac.cli.fid_cmds", "fid", "FID/proxy reference statistics and scores."),
    "analyze": ("qac.cli.eval_cmds", "analyze", "L_CFM(t) and trajectory curvature of a run."),
    "sweep": ("qac.cli.eval_cmds", "sweep_cmd", "A metric vs NFE for runs x solvers."),
    "edit": ("qac.cli.edit_cmds", "edit", "Zero-shot super-resolution, colorization, inpainting (Alg. 2)."),
    "align": ("qac.cli.align_cmds", "align_cmd", "Timestep aligner (+ Q-Sched scalars) for a run and solver."),
}


def _one_line(message: str) -> None:
    click.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(2)


class LazyGroup(click.Group):
    """A click group whose commands come from :data:`COMMANDS`, imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """The names of :data:`COMMANDS`, sorted (what ``qac --help`` lists)."""
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        """Import the module of command ``name`` on first use and return the command; None if unknown."""
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The ``Commands`` section of the help from the one-line texts of :data:`COMMANDS` (no command is imported)."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][2]) for name in self.list_commands(ctx)])

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        """Run the chosen command; a :class:`QACError` or an out-of-memory error becomes one ``error:`` line, exit 2."""
        try:
            return super().invoke(ctx)
        except QACError as exc:
            _one_line(str(exc))
        except Exception as exc:
            if type(exc).__name__ == "OutOfMemoryError":  # torch's, matched by name: no torch import here
                _one_line(f"out of device memory ({str(exc).splitlines()[0][:120]}); lower --batch")
            raise

    def main(self, *args, **kwargs):  # type: ignore[override]
        """Run the CLI; click's usage errors (bad option, missing value) become one ``error:`` line."""
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(130)
        except click.ClickException as exc:
            _one_line(exc.format_message())
        except QACError as exc:
            _one_line(str(exc))
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="qac")
def main() -> None:
    """qac: few-step diffusion with Quantized Adaptive Conditions."""
