"""Imports every command module so that each attaches its commands to :data:`qac.cli.main`."""

from qac.cli import eval_cmds, fid_cmds, sample_cmds, sampling_cmds, train_cmds  # noqa: F401
