"""Timestep aligner and Q-Sched-style scheduler scalars for any trained model and solver (docs/design.md §8).

``align(target, AlignConfig(...))`` learns one noise-level offset per network evaluation (and optionally
per-evaluation multipliers on the model output and the state) for a fixed (solver, NFE, AFS, schedule);
the resulting :class:`Aligner` wraps the denoiser the solver calls. ``qac align`` is the command line.

>>> from qac.align import AlignConfig, align, gmm_target
>>> al = align(gmm_target(), AlignConfig(solver="euler", nfe=3, pool=64, val=16, iters=2, batch=8))
>>> len(al.delta), al.plan.eval_steps
(3, (0, 1, 2))
"""

from qac.align.aligned import MODES, AlignedDenoise, aligned_level, qsched_adjust
from qac.align.config import LOSSES, AlignConfig
from qac.align.file import Aligner
from qac.align.plan import EvalPlan, make_plan
from qac.align.targets import Target, bind_model, gmm_target, run_target, weights_sha256
from qac.align.train import align
from qac.align.use import aligner_for_run, plot_delta, run_identity, sweep_factories

__all__ = ["LOSSES", "MODES", "AlignConfig", "AlignedDenoise", "Aligner", "EvalPlan", "Target", "align",
           "aligned_level", "aligner_for_run", "bind_model", "gmm_target", "make_plan", "plot_delta", "qsched_adjust",
           "run_identity", "run_target", "sweep_factories", "weights_sha256"]
