"""``python -m qac.cli`` (also what ``torchrun -m qac.cli train ...`` runs)."""

from qac.cli import main

main()
