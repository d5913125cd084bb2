"""One optimizer step over a global batch split across processes and accumulation rounds (Alg. 1 lines 5-10).

The global batch of ``B`` images of step ``s`` is a fixed list of dataset items (:func:`batch_indices`); process
``r`` of ``K`` takes rows ``[r·B/K, (r+1)·B/K)`` and feeds them in rounds of ``batch_gpu`` rows, accumulating
gradients (EDM's ``--batch-gpu``; DDP synchronises only on the last round). Every per-image random draw — noise
level σ, noise n, the augmentation parameters, the optional x-flip, the VAE code noise — is one row of a draw for
the whole global batch from generators seeded by ``(seed, step)``, so image j of step s sees the same randomness
for any number of processes, any ``batch_gpu`` and across a resume. Only dropout (the global generator) is seeded per
``(seed, rank, step, round)``. Loss: sum over elements, mean over the global batch (``docs/design.md §1``).

Mixed precision (CUDA only): autocast to bf16, or fp16 with a dynamic loss scale (``torch.amp.GradScaler``);
the loss, the preconditioning and the optimizer stay in float32.
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from qac.data import ArrayDataset
from qac.data.augment import AugmentConfig, AugmentPipe, draw_augment, slice_params
from qac.errors import QACError
from qac.model import resolve_arch
from qac.nn import UNET_PRESETS
from qac.train.config import TrainConfig
from qac.train.distributed import DistInfo
from qac.util import derive_seed

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_DROPOUT, _DRAWS, _NOISE, _CODE_NOISE = 0, 1, 2, 3  # seed streams


def batch_indices(step: int, batch: int, n: int, seed: int, info: DistInfo) -> Tensor:
    """Dataset indices of this rank's share of global batch ``step``: epochs of seeded permutations."""
    per_rank = batch // info.world_size
    start = step * batch + info.rank * per_rank
    js = torch.arange(start, start + per_rank)
    epochs = js // n
    out = torch.empty_like(js)
    for e in epochs.unique().tolist():
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + e))
        sel = epochs == e
        out[sel] = perm[js[sel] % n]
    return out


@dataclass(frozen=True)
class BatchPlan:
    """How a global batch splits: ``world`` processes × ``rounds`` accumulation rounds × ``batch_gpu`` rows."""

    batch: int
    world: int
    batch_gpu: int

    @property
    def per_rank(self) -> int:
        """Rows of the global batch per process: ``batch // world``."""
        return self.batch // self.world

    @property
    def rounds(self) -> int:
        """Accumulation rounds per process: ``per_rank // batch_gpu``."""
        return self.per_rank // self.batch_gpu

    def rows(self, rank: int, rnd: int) -> slice:
        """Positions in the global batch of round ``rnd`` on process ``rank``."""
        lo = rank * self.per_rank + rnd * self.batch_gpu
        return slice(lo, lo + self.batch_gpu)


def plan_batch(batch: int, world: int, batch_gpu: int | None) -> BatchPlan:
    """Check that ``batch`` splits into ``world`` × rounds × ``batch_gpu`` (default: one round per process)."""
    gpu = batch // world if batch_gpu is None else batch_gpu
    if batch_gpu is not None and batch_gpu < 1:
        raise QACError(f"--batch-gpu must be >= 1, got {batch_gpu}")
    if batch % world or gpu < 1 or (batch // world) % gpu:
        raise QACError(f"--batch {batch} is not divisible by world size {world} × --batch-gpu {gpu}")
    return BatchPlan(batch, world, gpu)


def resolve_augment(cfg: TrainConfig, kind: str, item_shape: tuple[int, ...]) -> TrainConfig:
    """Give the network an augmentation input of the pipeline's label width when ``cfg.augment > 0``.

    The EDM presets already have ``augment_dim = 9``; a small preset gets one added. A network whose
    augmentation input has another width is an error.
    """
    if cfg.augment == 0:
        return cfg
    if kind != "image":
        raise QACError("--augment is for image data; this data set holds points")
    want = AugmentConfig(p=cfg.augment).label_dim
    arch = resolve_arch(cfg.model, kind, item_shape)
    have = cfg.model.augment_dim if cfg.model.augment_dim is not None else UNET_PRESETS[arch].augment_dim
    if have not in (0, want):
        raise QACError(f"the network's augmentation input has {have} dims, the pipeline's label {want}")
    return cfg.replace(model=dataclasses.replace(cfg.model, augment_dim=want)) if have != want else cfg


class StepTools:
    """Per-run parts of a step: batch plan, augmentation, autocast dtype, fp16 loss scaler, memory format."""

    def __init__(self, cfg: TrainConfig, info: DistInfo, device: torch.device, model: nn.Module) -> None:
        self.plan = plan_batch(cfg.batch_size, info.world_size, cfg.batch_gpu)
        if cfg.amp and device.type != "cuda":
            raise QACError(f"--amp needs a CUDA device; this run is on {device.type} (drop --amp)")
        self.amp_dtype = AMP_DTYPES[cfg.amp_dtype] if cfg.amp else None
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.pipe = AugmentPipe(AugmentConfig(p=cfg.augment)) if cfg.augment > 0 else None
        backbone = getattr(getattr(model, "denoiser", None), "backbone", None)
        self.augment_dim = int(getattr(getattr(backbone, "config", None), "augment_dim", 0) or 0)
        self.channels_last = cfg.channels_last and len(getattr(model, "item_shape", ())) == 3
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.compile = cfg.compile

    def wrap(self, loss_module: nn.Module) -> nn.Module:
        """``torch.compile`` the (DDP-wrapped) loss module when asked."""
        return torch.compile(loss_module) if self.compile else loss_module

    def state_dict(self) -> dict[str, Any]:
        """The fp16 loss scaler's state for checkpoints (empty without fp16)."""
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the fp16 loss scaler from :meth:`state_dict` output (nothing to do without one)."""
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])


@dataclass(frozen=True)
class StepDraws:
    """The randomness of one global batch: σ [B], noise [B, ...] (on the device), flips, augmentation and
    the VAE condition's code noise eps [B, d] (its own stream; None for the other conditions)."""

    sigma: Tensor
    noise: Tensor
    flip: Tensor | None
    augment: dict[str, Tensor] | None
    code_noise: Tensor | None = None


def draw_step(cfg: TrainConfig, step: int, formulation: Any, item_shape: tuple[int, ...], device: torch.device,
              tools: StepTools) -> StepDraws:
    """All per-image draws of global batch ``step`` (identical on every process)."""
    n = cfg.batch_size
    gen = torch.Generator().manual_seed(derive_seed(cfg.seed, step, _DRAWS))
    sigma = formulation.sample_sigma(n, gen, torch.device("cpu"))
    flip = torch.rand(n, generator=gen) < 0.5 if cfg.xflip and len(item_shape) == 3 else None
    augment = draw_augment(tools.pipe.cfg, n, gen) if tools.pipe is not None else None
    noise_gen = torch.Generator(device=device).manual_seed(derive_seed(cfg.seed, step, _NOISE))
    noise = torch.randn((n, *item_shape), generator=noise_gen, device=device)
    code_noise = None
    if cfg.model.condition.continuous_code:
        code_gen = torch.Generator().manual_seed(derive_seed(cfg.seed, step, _CODE_NOISE))
        code_noise = torch.randn((n, cfg.model.code_dim), generator=code_gen).to(device)
    return StepDraws(sigma, noise, flip, augment, code_noise)


def _unwrap(module: nn.Module) -> nn.Module:
    module = getattr(module, "_orig_mod", module)  # torch.compile
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def train_step(loss_module: nn.Module, opt: torch.optim.Optimizer, data: ArrayDataset, step: int, cfg: TrainConfig,
               info: DistInfo, device: torch.device, tools: StepTools, lr: float,
               images: Tensor | None = None) -> tuple[float, Tensor | None, float]:
    """One optimizer step; returns (mean per-element loss, code indices of this process or None, grad norm).

    ``images``: this process's share of the batch (float in [-1, 1] or uint8) when a data loader fetched it;
    otherwise it is read from ``data``. The grad norm is 0 when the fp16 loss scaler skipped the step.
    """
    plan = tools.plan
    inner = _unwrap(loss_module)
    model = inner.model
    draws = draw_step(cfg, step, model.formulation, tuple(data.shape), device, tools)
    if images is None:
        images = data.data[batch_indices(step, cfg.batch_size, len(data), cfg.seed, info)]
    ddp = getattr(loss_module, "_orig_mod", loss_module)
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad(set_to_none=True)
    losses, idxs = [], []
    for rnd in range(plan.rounds):
        torch.manual_seed(derive_seed(cfg.seed, info.rank, step, _DROPOUT, rnd))  # dropout
        rows = plan.rows(info.rank, rnd)
        local = slice(rows.start - info.rank * plan.per_rank, rows.stop - info.rank * plan.per_rank)
        x0 = images[local].to(device, non_blocking=True)
        x0 = x0.to(torch.float32) / 127.5 - 1.0 if x0.dtype == torch.uint8 else x0.to(torch.float32)
        if draws.flip is not None:
            x0 = torch.where(draws.flip[rows].to(device)[:, None, None, None], x0.flip(-1), x0)
        labels = None
        if tools.pipe is not None:
            x0, labels = tools.pipe.apply(x0, slice_params(draws.augment, rows))
        elif tools.augment_dim:
            labels = torch.zeros(len(x0), tools.augment_dim, device=device)  # the non-leaky "no augmentation"
        if tools.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        last = rnd == plan.rounds - 1
        sync = nullcontext() if last or not isinstance(ddp, nn.parallel.DistributedDataParallel) else ddp.no_sync()
        with sync:
            with torch.autocast(device.type, dtype=tools.amp_dtype, enabled=tools.amp_dtype is not None):
                code_noise = None if draws.code_noise is None else draws.code_noise[rows]
                loss_el, idx = loss_module(x0, draws.sigma[rows].to(device), draws.noise[rows], labels, code_noise)
            loss = loss_el.float().sum() / plan.per_rank
            (tools.scaler.scale(loss) if tools.scaler is not None else loss).backward()
        losses.append(float(loss_el.detach().float().mean()))
        if idx is not None:
            idxs.append(idx)
    params = [p for p in model.parameters() if p.grad is not None]
    if tools.scaler is not None:
        tools.scaler.unscale_(opt)
    grad_norm = float(torch.nn.utils.get_total_norm([p.grad for p in params]))
    if tools.scaler is not None:
        tools.scaler.step(opt)
        tools.scaler.update()
        grad_norm = grad_norm if torch.isfinite(torch.tensor(grad_norm)) else 0.0
    else:
        opt.step()
    return sum(losses) / len(losses), torch.cat(idxs) if idxs else None, grad_norm
