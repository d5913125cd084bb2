"""Solver functions ``(denoise, x, sigmas, *, callback=None, **opts) -> x``; see the registry."""

from qac.sampling.solvers.adams import deis, ipndm, ipndm_v
from qac.sampling.solvers.adaptive import rk45
from qac.sampling.solvers.multistep import dpmpp_2m, dpmpp_3m, unipc
from qac.sampling.solvers.single_step import dpm2, euler, heun
from qac.sampling.solvers.stochastic import edm_sde, euler_maruyama

__all__ = ["deis", "dpm2", "dpmpp_2m", "dpmpp_3m", "edm_sde", "euler", "euler_maruyama", "heun", "ipndm",
           "ipndm_v", "rk45", "unipc"]
