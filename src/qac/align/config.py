"""Settings of one alignment (docs/design.md §8): solver and grid, mode, loss, parameters, pool, optimiser."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from qac.align.aligned import MODES, Mode
from qac.errors import QACError

Loss = Literal["sc", "tm", "dsm", "global"]
LOSSES: tuple[str, ...] = get_args(Loss)


@dataclass(frozen=True)
class AlignConfig:
    """One (solver, NFE) alignment.

    Grid: ``solver``, ``nfe``, ``afs``, ``schedule``, ``sigma_min``, ``sigma_max``, ``rho`` (as for
    :func:`qac.sampling.sample`). ``mode``: ``full`` (D at tau) or ``embed`` (only the noise embedding).
    ``loss``: ``tm`` local teacher matching (a Heun solve with ``teacher_substeps`` sub-steps of each interval),
    ``sc`` self-consistency (TimeTuner's loss; the last step keeps delta = 0), ``dsm`` (real data, each step
    from ``y + sigma_i n``), ``global`` (all evaluations jointly, backprop through the whole sampler against
    a Heun solve with ``teacher_steps`` steps (2 evaluations each) from the same noise). ``delta``/``qsched``: learn the
    offsets and/or the Q-Sched multipliers. ``delta_max``: bound ``delta = delta_max tanh(u)`` (None: free).
    Pool: ``pool`` trajectories from seeds ``pool_seed ..`` (disjoint from evaluation seeds 0-49999), of
    which ``val`` are held out to accept a step's parameters only if they lower its loss; ``iters`` Adam
    iterations (``lr``) per step at ``batch`` rows. ``cached``: advance a cached pool (O(N)) instead of
    replaying every prefix through the network (O(N^2), the official scheme; same result).
    """

    solver: str = "euler"
    nfe: int = 5
    afs: bool = False
    schedule: str = "polynomial"
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float | None = None
    mode: Mode = "full"
    loss: Loss = "global"
    delta: bool = True
    qsched: bool = False
    delta_max: float | None = 1.0
    pool: int = 1024
    val: int = 128
    iters: int = 100
    batch: int = 64
    lr: float = 1e-2
    teacher_substeps: int = 4
    teacher_steps: int = 18
    checkpoint: bool = True
    cached: bool = True
    seed: int = 0
    pool_seed: int = 1_000_000
    chunk: int = 512

    def validate(self) -> AlignConfig:
        """Raise :class:`QACError` on impossible settings; return self."""
        checks = [
            (self.mode in MODES, f"mode must be one of {', '.join(MODES)}, got {self.mode!r}"),
            (self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}"),
            (self.delta or self.qsched, "nothing to learn: enable the offsets (delta) and/or --qsched"),
            (self.delta_max is None or self.delta_max > 0, "delta_max must be > 0"),
            (self.val >= 1 and self.pool > self.val, f"pool ({self.pool}) must exceed the held-out val ({self.val})"),
            (self.iters >= 0 and self.batch >= 1 and self.lr > 0, "iters >= 0, batch >= 1 and lr > 0 needed"),
            (self.teacher_substeps >= 1 and self.teacher_steps >= 1, "teacher_substeps, teacher_steps >= 1"),
            (self.chunk >= 1, "chunk must be >= 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise QACError(msg)
        return self

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (stored under ``config`` in the aligner file)."""
        return asdict(self)


__all__ = ["AlignConfig", "LOSSES", "Loss", "MODES"]
