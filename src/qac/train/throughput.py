"""Training and sampling throughput of a configuration on this machine (images per second).

Synthetic uint8 images of the right shape stand in for the data set, so a measurement needs no data on
disk; the step is the real one (:func:`qac.train.step.train_step`: augmentation, accumulation, autocast).
Used by ``qac info --recipe`` (cost estimate) and ``benchmarks/throughput.py``.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from qac.data import ArrayDataset
from qac.model import build_model
from qac.train.config import TrainConfig
from qac.train.distributed import DistInfo
from qac.train.loop import _LossModule, lr_at
from qac.train.step import StepTools, resolve_augment, train_step


def synthetic_images(item_shape: tuple[int, ...], n: int, seed: int = 0) -> ArrayDataset:
    """``n`` random uint8 images ``[C, H, W]`` (a stand-in data set for timing)."""
    gen = torch.Generator().manual_seed(seed)
    return ArrayDataset(torch.randint(0, 256, (n, *item_shape), generator=gen, dtype=torch.uint8), None, "image",
                        "synthetic")


def measure_train(cfg: TrainConfig, item_shape: tuple[int, ...], *, steps: int = 3, warmup: int = 1,
                  device: torch.device | str = "cpu") -> float:
    """Images per second of ``steps`` timed optimizer steps of ``cfg`` (global batch ``cfg.batch_size`` on one
    process) after ``warmup`` untimed ones."""
    device = torch.device(device)
    data = synthetic_images(item_shape, max(cfg.batch_size, 1))
    cfg = resolve_augment(dataclasses.replace(cfg, device=str(device)), "image", item_shape)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, "image", item_shape).to(device)
    info = DistInfo()
    tools = StepTools(cfg, info, device, model)
    module = tools.wrap(_LossModule(model))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    t0 = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            _sync(device)
            t0 = time.perf_counter()
        train_step(module, opt, data, step, cfg, info, device, tools, lr_at(step, cfg))
    _sync(device)
    return steps * cfg.batch_size / (time.perf_counter() - t0)


@torch.no_grad()
def measure_sampling(cfg: TrainConfig, item_shape: tuple[int, ...], *, batch: int, nfe: int = 4,
                     device: torch.device | str = "cpu", amp: bool = False) -> float:
    """Images per second of Euler sampling at ``nfe`` evaluations (untrained network, same cost)."""
    from qac.conditions import CodeWeights
    from qac.sampling.generate import generate

    device = torch.device(device)
    model = build_model(cfg.model, "image", item_shape).to(device).eval()
    weights = None
    if model.conditional:
        weights = CodeWeights(model.levels, model.code_dim, device=device)
        weights.update(torch.arange(min(16, weights.size), device=device), decay=0.0)
    seeds = list(range(batch))
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        generate(model, seeds[:1], code_weights=weights, solver="euler", nfe=1, device=device)
        _sync(device)
        t0 = time.perf_counter()
        generate(model, seeds, code_weights=weights, solver="euler", nfe=nfe, batch_size=batch, device=device)
        _sync(device)
    return batch / (time.perf_counter() - t0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
