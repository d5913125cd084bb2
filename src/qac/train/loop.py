"""The training loop: paper Algorithm 1 (QAC) or plain EDM-style training (``cond='none'``).

Reads top to bottom: set-up, loop (one step = Alg. 1 lines 5-13), report, snapshot. Per-step
randomness is derived from (seed, step) alone (:mod:`qac.train.step`), so resuming from a snapshot
continues bit for bit, with any number of processes and accumulation rounds.
"""

from __future__ import annotations

import copy
import json
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from qac.conditions import CodeWeights
from qac.data import ArrayDataset
from qac.data.base import check_finite
from qac.diffusion import denoising_loss
from qac.errors import QACError
from qac.model import NonFiniteError, QACModel, build_model
from qac.sampling.generate import generate
from qac.train.batches import open_training_data, step_batches
from qac.train.checkpoint import CKPT, load_snapshot, load_weights, save_checkpoint
from qac.train.config import TrainConfig, load_config
from qac.train.distributed import DistInfo, all_reduce_sum, barrier, init_distributed
from qac.train.ema import ema_beta, update_ema
from qac.train.guard import LossGuard, TrainingDiverged, check_batch_memory, probe_loss
from qac.train.lock import LOCK_NAME, RunLock
from qac.train.resume import resume_config
from qac.train.run import code_weights_of
from qac.train.signals import GracefulStop
from qac.train.step import StepTools, batch_indices, resolve_augment, train_step
from qac.util import atomic_write_json, resolve_device

__all__ = ["TrainSummary", "TrainingDiverged", "batch_indices", "lr_at", "train"]



@dataclass(frozen=True)
class TrainSummary:
    """What :func:`train` returns: the run folder, the last step, its loss and timings."""

    run_dir: Path
    step: int
    loss: float
    seconds: float
    interrupted: bool = False
    signal: int | None = None
    start_step: int = 0
    is_main: bool = True  # False on the other ranks of a torchrun job (they print nothing)


class _LossModule(nn.Module):
    """One forward for DDP: Alg. 1 lines 6-9 -> (per-element weighted loss (+ KL term), code indices or None)."""

    def __init__(self, model: QACModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x0: Tensor, sigma: Tensor, noise: Tensor, augment_labels: Tensor | None = None,
                code_noise: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        cond = self.model.training_inputs(x0, noise, code_noise)  # QAC code / RNE noise / VAE code
        extra = {} if augment_labels is None else {"augment_labels": augment_labels}
        loss = denoising_loss(self.model, x0, sigma, cond.noise, cond.code, **extra)
        return (loss if cond.kl is None else loss + cond.kl), cond.index


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``cfg.lr`` over ``lr_warmup_steps`` steps, then constant (EDM)."""
    return cfg.lr * min((step + 1) / max(cfg.lr_warmup_steps, 1), 1.0)


def train(cfg: TrainConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True,
          data: ArrayDataset | None = None, overrides: tuple[str, ...] = ()) -> TrainSummary:
    """Train (or resume) a run in ``run_dir``; returns a summary. See :class:`TrainConfig`.

    A new run needs an absent or empty folder; ``resume=True`` continues the saved config, changed only as
    :func:`qac.train.resume.resume_config` allows (``overrides`` names the optimisation settings to change).
    The folder is locked against a second writer for the whole run (:class:`qac.train.lock.RunLock`).
    """
    run_dir = Path(run_dir)
    cfg.validate()
    main = int(os.environ.get("RANK", "0")) == 0
    with RunLock(run_dir, "resume" if resume else "train") if main else nullcontext():
        return _train(cfg, run_dir, resume, progress, data, overrides)


def _train(cfg: TrainConfig, run_dir: Path, resume: bool, progress: bool, data: ArrayDataset | None,
           overrides: tuple[str, ...]) -> TrainSummary:
    cfg, snap = _prepare_run(cfg, run_dir, resume, overrides)
    info = init_distributed(cfg.device)
    device = resolve_device(f"cuda:{info.local_rank}" if info.enabled and torch.cuda.is_available()
                            else cfg.device)
    if cfg.batch_size % info.world_size:
        raise QACError(f"batch size {cfg.batch_size} is not divisible by {info.world_size} processes")
    if data is None:
        data = open_training_data(cfg)
    if len(data) == 0:
        raise QACError(f"dataset {data.name!r} is empty")
    if isinstance(data, ArrayDataset):
        check_finite(data)
    check_batch_memory(cfg.batch_size // info.world_size, data.shape, device)
    cfg = resolve_augment(cfg, data.kind, tuple(data.shape))
    torch.manual_seed(cfg.seed)  # initial weights depend on the seed alone (identical on every rank)
    model = build_model(cfg.model, data.kind, data.shape).to(device)
    tools = StepTools(cfg, info, device, model)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
    codes = CodeWeights(cfg.model.levels, cfg.model.code_dim, device=device) if model.conditional else None
    step = 0
    if snap is not None:
        load_weights(model, snap.model, snap.path / "model", run_dir)
        load_weights(ema, snap.ema, snap.path / "ema", run_dir)
        state = snap.resume_state()
        _load_optimizer(opt, state, snap.path / "resume.pt")
        step = int(state["step"])
        tools.load_state_dict(state)
        if codes is not None:
            codes.load_state_dict(code_weights_of(snap.code_weights, cfg, snap.path / "codes.safetensors",
                                                  device).state_dict())
    loss_module: nn.Module = _LossModule(model)
    if info.enabled:
        loss_module = nn.parallel.DistributedDataParallel(
            loss_module, device_ids=[device.index] if device.type == "cuda" else None)
    loss_module = tools.wrap(loss_module)
    batches = step_batches(data, cfg, info, step, device) if cfg.workers > 0 else None
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / "config.json", cfg.to_dict())
    bar = tqdm(total=cfg.steps, initial=step, disable=not (progress and info.is_main), unit="step",
               dynamic_ncols=True, desc="train")
    t0, window, last_loss = time.perf_counter(), [], float("nan")
    t_window, start_step = t0, step
    guard = LossGuard(run_dir, step if snap is not None else None)
    if snap is not None:
        guard.load_state_dict(state)
    stop = GracefulStop(enabled=not info.enabled)
    try:
        while step < cfg.steps and not stop.requested:
            try:
                loss, idx, grad_norm = _train_step(loss_module, opt, data, step, cfg, info, device, tools,
                                                   None if batches is None else next(batches))
            except NonFiniteError:
                loss, idx, grad_norm = float("nan"), None, float("nan")
            guard.check(loss, grad_norm, step)
            beta = ema_beta(step * cfg.batch_size, cfg.batch_size, cfg.ema_halflife_img, cfg.ema_rampup_ratio)
            update_ema(ema, model, beta)  # Alg. 1 line 11
            if codes is not None:  # Alg. 1 lines 12-13; counts all-reduced across ranks first
                codes.update_counts(all_reduce_sum(codes.batch_counts(idx), info), beta)
            step += 1
            window.append(loss)
            last_loss = loss
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                now = time.perf_counter()
                stats = _report(step, window, now - t_window, cfg, beta, grad_norm, idx, codes)
                t_window, window = now, []
                bar.set_postfix(loss=f"{stats['loss']:.4f}", img_s=f"{stats['img_per_s']:.0f}")
                if info.is_main:
                    with open(run_dir / "stats.jsonl", "a") as fh:
                        fh.write(json.dumps(stats) + "\n")
            if not info.is_main:
                continue
            if step % cfg.grid_every == 0 or step == cfg.steps:
                _save_grid(ema, codes, cfg, run_dir, step, device)
            if step % cfg.snapshot_every == 0 or step == cfg.steps or stop.requested:
                # keep the previous snapshot unless the weights about to replace it give a sane loss
                probe = probe_loss(loss_module, ema, data, cfg.seed, step, cfg.batch_size, device)
                guard.check(probe, 0.0, step, before_snapshot=True)
                _snapshot(run_dir, model, ema, codes, opt, step, cfg, data,
                          {**tools.state_dict(), **guard.state_dict()})
                guard.saved_step = step
    finally:
        bar.close()
        stop.restore()
    barrier(info)  # rank 0's last snapshot is on disk before any rank returns
    return TrainSummary(run_dir, step, last_loss, time.perf_counter() - t0, interrupted=stop.requested,
                        signal=stop.signum, start_step=start_step, is_main=info.is_main)


def _snapshot(run_dir: Path, model: QACModel, ema: QACModel, codes: CodeWeights | None,
              opt: torch.optim.Optimizer, step: int, cfg: TrainConfig, data: ArrayDataset,
              extra: dict[str, Any] | None = None) -> None:
    save_checkpoint(run_dir, model=model, ema=ema, code_weights=None if codes is None else codes.state_dict(),
                    resume={"optimizer": opt.state_dict(), "step": step, **(extra or {})},
                    meta={"step": step, "nimg": step * cfg.batch_size, "time": time.time(),
                          "data_kind": data.kind, "item_shape": list(data.shape)})


def _prepare_run(cfg: TrainConfig, run_dir: Path, resume: bool, overrides: tuple[str, ...]) -> tuple[TrainConfig, Any]:
    """Validate; a new run needs an empty folder; on resume, check the changes against the saved config."""
    if not resume:
        if int(os.environ.get("RANK", "0")) == 0:  # other ranks start while rank 0 may be writing config.json
            _check_fresh_folder(run_dir)
        return cfg.validate(), None
    if not run_dir.is_dir():
        raise QACError(f"run folder {run_dir} does not exist (drop --resume to start a new run)")
    saved = load_config(run_dir / "config.json")
    snap = load_snapshot(run_dir)
    return resume_config(saved, cfg, int(snap.meta["step"]), run_dir, overrides), snap


def _load_optimizer(opt: torch.optim.Optimizer, state: dict[str, Any], path: Path) -> None:
    try:
        opt.load_state_dict(state["optimizer"])
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise QACError(f"optimizer state in {path} does not fit the model ({' '.join(str(exc).split())[:160]})") \
            from None


def _check_fresh_folder(run_dir: Path) -> None:
    """A new run never writes into a folder that holds anything (a run, a cut snapshot, other files)."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise QACError(f"--out {run_dir} is a file, not a folder")
    entries = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_NAME)
    if {CKPT, f"{CKPT}.old"} & set(entries):
        raise QACError(f"{run_dir} already holds a run; pass --resume to continue it or pick a new --out")
    if entries:
        raise QACError(f"{run_dir} is not empty (holds {entries[0]!r}{' and more' if len(entries) > 1 else ''}); "
                       "train writes only into a new or empty folder: pick another --out")


def _train_step(loss_module: nn.Module, opt: torch.optim.Optimizer, data: ArrayDataset, step: int,
                cfg: TrainConfig, info: DistInfo, device: torch.device, tools: StepTools | None = None,
                images: Tensor | None = None) -> tuple[float, Tensor | None, float]:
    """One optimizer step (Alg. 1 lines 5-10) with :func:`qac.train.step.train_step`."""
    if tools is None:
        inner = loss_module.module if isinstance(loss_module, nn.parallel.DistributedDataParallel) else loss_module
        tools = StepTools(cfg, info, device, inner.model)
    return train_step(loss_module, opt, data, step, cfg, info, device, tools, lr_at(step, cfg), images)


def _report(step: int, window: list[float], seconds: float, cfg: TrainConfig, beta: float, grad_norm: float,
            idx: Tensor | None, codes: CodeWeights | None) -> dict[str, Any]:
    stats: dict[str, Any] = {
        "step": step, "nimg": step * cfg.batch_size, "loss": float(np.mean(window)), "lr": lr_at(step - 1, cfg),
        "ema_beta": beta, "grad_norm": grad_norm, "img_per_s": len(window) * cfg.batch_size / max(seconds, 1e-9),
    }
    if codes is not None and idx is not None:
        stats["codes_in_batch"] = int(idx.unique().numel())
        stats["codes_used"] = codes.num_used(1e-3)
        stats["code_perplexity"] = codes.perplexity()
    return stats


def _save_grid(ema: QACModel, codes: CodeWeights | None, cfg: TrainConfig, run_dir: Path, step: int,
               device: torch.device) -> None:
    from qac.viz import save_samples_picture

    seeds = list(range(cfg.grid_size))
    out = generate(ema, seeds, code_weights=codes, solver="heun", steps=cfg.grid_steps, device=device)
    scale = max(1, 128 // ema.item_shape[-1]) if len(ema.item_shape) == 3 else 1
    save_samples_picture(out.samples, run_dir / "samples" / f"grid-{step:06d}.png", scale=scale)
