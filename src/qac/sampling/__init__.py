"""Fast diffusion samplers (docs/design.md §4): schedules, one solver registry, and :func:`sample`.

>>> import torch
>>> from qac.sampling import sample
>>> res = sample(lambda x, s: torch.zeros_like(x), torch.randn(4, 2), solver="dpmpp_2m", nfe=5, afs=True)
>>> res.nfe, tuple(res.samples.shape)
(5, (4, 2))
"""

from qac.sampling.registry import SOLVERS, SolverEntry, get_solver
from qac.sampling.sample import SampleResult, sample, steps_for_nfe
from qac.sampling.schedules import SCHEDULES, make_sigmas
from qac.sampling.solvers import (
    deis,
    dpm2,
    dpmpp_2m,
    dpmpp_3m,
    edm_sde,
    euler,
    euler_maruyama,
    heun,
    ipndm,
    ipndm_v,
    rk45,
    unipc,
)

__all__ = ["SCHEDULES", "SOLVERS", "SampleResult", "SolverEntry", "deis", "dpm2", "dpmpp_2m", "dpmpp_3m",
           "edm_sde", "euler", "euler_maruyama", "get_solver", "heun", "ipndm", "ipndm_v", "make_sigmas",
           "rk45", "sample", "steps_for_nfe", "unipc"]
