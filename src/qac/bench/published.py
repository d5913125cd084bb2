"""Published forms of two solvers, restated from their formulas, as reference rows for the benches.

- :func:`ipndm_v_published`: diff-sampler's ``ipndm_v_sampler`` (zju-pi/diff-sampler, diff-solvers-main
  ``solvers.py``). With ``h_n = sigma_{i+1} - sigma_i``, ``h_{n-k} = sigma_{i-k+1} - sigma_{i-k}`` and
  ``x_{i+1} = x_i + h_n sum_j c_j d_{i-j}``:

  * order 2: ``c = (1 + h_n/(2 h_{n-1}), -h_n/(2 h_{n-1}))`` (the exact variable-step AB2);
  * order 3: ``t = (1 - h_n^2 / (3 h_{n-1} (h_{n-1} + h_{n-2}))) / 2`` -- the published expression
    ``h_n/(3(h_n+h_{n-1})) * (h_n (h_n+h_{n-1})) / (h_{n-1}(h_{n-1}+h_{n-2}))`` evaluated left to right,
    where the variable-step AB3 needs ``(1 - h_n/(3(h_n+h_{n-1}))) * h_n (h_n+h_{n-1}) /
    (h_{n-1}(h_{n-1}+h_{n-2})) / 2`` (the parenthesis closes too early); then
    ``c = ((2 + h_n/h_{n-1})/2 + t, -h_n/(2h_{n-1}) - (1 + h_{n-1}/h_{n-2}) t, t h_{n-1}/h_{n-2})``;
  * order 4: the same ``t1 = t`` plus a third-difference term ``t2`` (:func:`ipndm_v_published_coeffs`)
    whose weights do not sum to the step on non-uniform grids (the method is inconsistent there), and which
    is not AB4 even on a uniform grid (``t2 = 11/24`` where AB4 needs ``3/8``: first weight 57/24, not 55/24).

  Order 3 reduces to iPNDM's AB3 on a uniform grid. On the EDM grid the form stops converging at high NFE
  (measured order ~1.8 over NFE 64-512, docs/solvers.md).
- DPM-Solver++(3M) as published is ``qac.sampling.dpmpp_3m(..., d2_weight="phi3")``.

The other solvers (euler, heun, dpm2, ipndm, dpmpp_2m, unipc, deis) are the published forms themselves.
"""

from __future__ import annotations

from torch import Tensor

from qac.sampling.solvers._common import Callback, Denoise, as_floats
from qac.sampling.solvers.adams import adams_solve, ipndm_v_published_coeffs

__all__ = ["ipndm_v_published", "ipndm_v_published_coeffs"]


def ipndm_v_published(denoise: Denoise, x: Tensor, sigmas: Tensor, *, callback: Callback | None = None,
                      afs: bool = False, max_order: int = 4) -> Tensor:
    """diff-sampler's iPNDM_v (the reference row): ``qac.sampling.ipndm_v(..., weights="published")``."""
    if not 1 <= max_order <= 4:
        raise ValueError(f"max_order must be in 1..4, got {max_order}")
    s = as_floats(sigmas)
    table = [ipndm_v_published_coeffs(s, i, min(max_order, i + 1)) for i in range(len(s) - 1)]
    return adams_solve(denoise, x, sigmas, table, callback, afs)
