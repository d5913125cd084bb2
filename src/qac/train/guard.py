"""Keeping the last good checkpoint true: the loss sanity rule and the check before a snapshot is kept.

Sanity rule (documented in docs/design.md): a training loss is *sane* when it is finite, its gradient
norm is finite, and it is at most ``LOSS_FACTOR`` (10^6) times the median of the last ``WINDOW`` (200)
sane losses of this process. A 10^6 jump is far outside the step-to-step noise of a diffusion loss
(the per-sigma weighting keeps it O(1)) yet is what one blown-up Adam update produces. The record is saved
with every snapshot (:meth:`LossGuard.state_dict`), so a resumed run applies the same rule as an unbroken one.

The loss of step k measures the weights *before* update k, so a snapshot written right after an update
could hold the weights that blew up. Before every snapshot, :func:`probe_loss` evaluates the weights about
to be saved on a seeded batch (without touching any random stream the training uses) and the snapshot is
written only if that loss is sane; otherwise training stops and the previous snapshot stays.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from pathlib import Path

import torch
from torch import Tensor, nn

from qac.data import ArrayDataset
from qac.errors import QACError
from qac.model import NonFiniteError
from qac.safeio import check_memory
from qac.util import derive_seed

LOSS_FACTOR = 1e6
WINDOW = 200
_PROBE_STREAM = 0x9B0BE


class TrainingDiverged(QACError):
    """The loss or gradients became NaN/Inf or insanely large; the last good checkpoint is kept."""


class LossGuard:
    """Running record of sane losses; :meth:`check` raises :class:`TrainingDiverged` on an insane one."""

    def __init__(self, run_dir: Path, saved_step: int | None, factor: float = LOSS_FACTOR,
                 window: int = WINDOW) -> None:
        self.run_dir = run_dir
        self.saved_step = saved_step
        self.factor = factor
        self.history: deque[float] = deque(maxlen=window)

    def state_dict(self) -> dict[str, Tensor]:
        """The sane-loss record, saved with each snapshot so a resumed run judges losses as an unbroken one."""
        return {"loss_history": torch.tensor(list(self.history), dtype=torch.float64)}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (snapshots written before it existed carry none: the record starts empty)."""
        self.history.clear()
        if "loss_history" in state:
            self.history.extend(float(v) for v in state["loss_history"])

    def problem(self, loss: float, grad_norm: float = 0.0) -> str | None:
        """Why ``loss`` is not sane, or ``None`` if it is."""
        if not math.isfinite(loss):
            return f"loss={loss}"
        if not math.isfinite(grad_norm):
            return f"gradient norm={grad_norm}"
        if self.history:
            med = statistics.median(self.history)
            if med > 0 and loss > self.factor * med:
                return f"loss={loss:.4g}, over {self.factor:.0e} x the running median {med:.4g}"
        return None

    def check(self, loss: float, grad_norm: float, step: int, *, before_snapshot: bool = False) -> None:
        """Record a sane loss, or raise :class:`TrainingDiverged` naming the kept checkpoint."""
        why = self.problem(loss, grad_norm)
        if why is None:
            if not before_snapshot:
                self.history.append(loss)
            return
        kept = (f"the last good checkpoint (step {self.saved_step}) in {self.run_dir} is kept"
                if self.saved_step is not None else f"no checkpoint was written to {self.run_dir}")
        when = f"after step {step} (weights not saved)" if before_snapshot else f"at step {step}"
        raise TrainingDiverged(f"training diverged {when} ({why}); {kept} — resume it with a lower learning "
                               "rate (--resume --lr X --override lr)")


@torch.no_grad()
def probe_loss(loss_fn: nn.Module, ema: nn.Module, data: ArrayDataset, seed: int, step: int, batch: int,
               device: torch.device) -> float:
    """Mean loss of the current weights on a seeded batch; NaN if they (or the EMA copy) are not finite.

    ``loss_fn(x0, sigma, noise) -> (per-element loss, indices)``. Every random stream of the training
    (global torch RNG, per-step generators) is left exactly as it was.
    """
    if not all(bool(torch.isfinite(p).all()) for p in ema.parameters()):
        return float("nan")
    gen = torch.Generator().manual_seed(derive_seed(seed, step, _PROBE_STREAM))
    n = min(batch, len(data))
    pick = torch.randperm(len(data), generator=gen)[:n]
    x0 = (data.as_float(pick) if hasattr(data, "as_float") else _lazy_float(data, pick)).to(device)
    inner = loss_fn.module if isinstance(loss_fn, nn.parallel.DistributedDataParallel) else loss_fn
    sigma = inner.model.formulation.sample_sigma(n, gen, device)
    noise = torch.randn(x0.shape, generator=gen).to(device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            loss_el: Tensor = inner(x0, sigma, noise)[0]
        except NonFiniteError:
            return float("nan")
    return float(loss_el.mean())


def _lazy_float(data, pick: Tensor) -> Tensor:
    """Items of a lazily read image set (:class:`qac.data.lazy.FileImages`) as float32 in [-1, 1]."""
    return data.items(pick).to(torch.float32) / 127.5 - 1.0


def check_batch_memory(batch: int, item_shape: tuple[int, ...], device: torch.device) -> None:
    """Refuse a batch whose bare tensors (data, noise, noisy input, output, loss and their gradients: eight
    float32 copies, a lower bound that ignores the network's activations) cannot fit on ``device``."""
    need = 8.0 * 4 * batch * math.prod(item_shape)
    what, hint = f"a training batch of {batch}", "lower --batch"
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if need > free:
            raise QACError(f"{what} needs at least {need / 2**30:.1f} GiB on {device}, {free / 2**30:.1f} GiB "
                           f"is free; {hint}")
        return
    check_memory(need, what, hint)
