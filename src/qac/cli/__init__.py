"""The ``qac`` command line: one click group; each command is a thin layer over library calls.

User mistakes (:class:`qac.QACError`) print one line and exit with code 2.
"""

from __future__ import annotations

import sys

import click

from qac import __version__
from qac.errors import QACError


class _Group(click.Group):
    """A click group that turns :class:`QACError` into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except QACError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="qac")
def main() -> None:
    """qac: few-step diffusion with Quantized Adaptive Conditions."""


def _register() -> None:
    from qac.cli import commands  # noqa: F401  (modules attach their commands to ``main``)


_register()
