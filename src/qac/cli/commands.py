"""Imports every command module so that each attaches its commands to :data:`qac.cli.main`."""
