"""Timestep aligner and Q-Sched-style scalars (docs/design.md §8)."""
