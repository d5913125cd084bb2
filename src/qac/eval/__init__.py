"""Evaluation drivers that run trained models: FID/proxy/toy scores of a run, NFE sweeps, L_CFM and curvature.

They sit above :mod:`qac.metrics` (pure metrics on tensors and statistics) and :mod:`qac.train` (run folders).
"""
