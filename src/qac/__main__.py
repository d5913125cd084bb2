"""``python -m qac`` = the ``qac`` command."""

from qac.cli import main

main()
