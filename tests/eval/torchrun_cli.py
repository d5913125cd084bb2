"""Run several ``qac`` commands, one per argument, inside one torchrun process group (saves launches in tests).

    python -m torch.distributed.run --nproc_per_node=2 tests/eval/torchrun_cli.py "sample --run R ..." "fid calc ..."

Each command is the real CLI (:data:`qac.cli.main`); a non-zero exit stops the script with that code.
"""

from __future__ import annotations

import shlex
import sys


def run_all(lines: list[str]) -> None:
    from qac.cli import main

    for line in lines:
        try:
            main(shlex.split(line), prog_name="qac")
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise


if __name__ == "__main__":
    run_all(sys.argv[1:])
