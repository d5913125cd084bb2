"""Exact benches for numerical checks (no training needed): :mod:`qac.bench.gmm`."""
