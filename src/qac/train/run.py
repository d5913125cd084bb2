"""Loading a trained run folder for sampling, analysis and offline code collection."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from qac.conditions import CodeWeights
from qac.data import ArrayDataset, open_dataset
from qac.errors import QACError
from qac.model import QACModel, build_model
from qac.train.checkpoint import (
    load_offline_codes,
    load_snapshot,
    load_weights,
    save_offline_codes,
)
from qac.train.config import TrainConfig, load_config
from qac.train.distributed import DistInfo, all_reduce_sum, barrier, shard
from qac.train.lock import RunLock
from qac.util import resolve_device


@dataclass
class LoadedRun:
    """A run folder opened for inference: the (EMA) model on a device, its config and code weights."""

    path: Path
    config: TrainConfig
    model: QACModel
    step: int
    online_weights: CodeWeights | None

    def code_weights(self, source: str = "online") -> CodeWeights | None:
        """Code weights to sample codes from: ``online`` (Alg. 1 EMA histogram), ``offline`` (collect) or
        ``uniform`` (uniform over the codes the online weights use).

        None for a model without a QAC code; asking an rne/vae run for ``offline`` weights is a QACError.
        """
        if not self.model.conditional:
            if source == "offline" and self.model.cond != "none":
                raise QACError(f"--codes offline needs QAC code weights; this run was trained with --cond "
                               f"{self.model.cond}, which has none")
            return None
        if source == "online":
            return self.online_weights
        if source == "uniform":
            return self.online_weights.uniform_over_used()
        if source == "offline":
            return code_weights_of(load_offline_codes(self.path), self.config, self.path / "codes_offline.safetensors",
                                   next(self.model.parameters()).device)
        raise QACError(f"code weights must be 'online', 'offline' or 'uniform', got {source!r}")

    def dataset(self) -> ArrayDataset:
        """The run's training data, opened with its config's ``data``, ``resolution``, ``max_items`` and ``seed``."""
        c = self.config
        return open_dataset(c.data, resolution=c.resolution, max_items=c.max_items, seed=c.seed)


def load_run(run_dir: str | Path, *, device: str | torch.device | None = "auto", ema: bool = True) -> LoadedRun:
    """Open ``run_dir`` (written by :func:`qac.train.train`) with EMA weights unless ``ema=False``.

    Example (after ``qac train --out runs/x``)::

        run = load_run("runs/x")
        out = qac.sampling.generate.generate(run.model, range(16), code_weights=run.code_weights())
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise QACError(f"run folder {run_dir} does not exist")
    cfg = load_config(run_dir / "config.json")
    snap = load_snapshot(run_dir)
    kind, shape = _data_signature(snap.meta, cfg)
    model = build_model(cfg.model, kind, shape)
    load_weights(model, snap.ema if ema else snap.model, snap.path / ("ema" if ema else "model"), run_dir)
    model.to(resolve_device(device)).eval().requires_grad_(False)
    codes = None
    if model.conditional:
        codes = code_weights_of(snap.code_weights, cfg, snap.path / "codes.safetensors",
                                next(model.parameters()).device)
    return LoadedRun(run_dir, cfg, model, int(snap.meta["step"]), codes)


def code_weights_of(state: dict[str, torch.Tensor] | None, cfg: TrainConfig, path: Path,
                    device: torch.device) -> CodeWeights:
    """The online code weights of a QAC run, checked against its config (QACError naming the file)."""
    if state is None:
        raise QACError(f"code weights {path} are missing: a QAC run needs them to sample (re-create them with "
                       f"`qac collect` and sample with --codes offline, or resume training)")
    size = cfg.model.levels**cfg.model.code_dim
    w = state.get("weights")
    if w is None or "levels" not in state or w.ndim != 1 or w.numel() != size:
        raise QACError(f"code weights {path} do not fit the run's codebook of {size} codes")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise QACError(f"code weights {path} hold negative or non-finite values (damaged or diverged)")
    return CodeWeights.from_state_dict(state, device=device)


def _data_signature(meta: dict, cfg: TrainConfig) -> tuple[str, tuple[int, ...]]:
    if "data_kind" in meta:
        return meta["data_kind"], tuple(meta["item_shape"])
    data = open_dataset(cfg.data, resolution=cfg.resolution, max_items=cfg.max_items, seed=cfg.seed)
    return data.kind, tuple(data.shape)


@torch.no_grad()
def collect_codes(model: QACModel, data: ArrayDataset, *, batch_size: int = 256, progress: bool = True,
                  info: DistInfo | None = None) -> CodeWeights:
    """Offline collection (paper §3.3): histogram of code indices of the whole dataset under the encoder.

    Under torchrun (``info``) each rank encodes its block of the items and the counts are summed (exact).
    """
    if not model.conditional:
        raise QACError(f"offline collection needs a model with a QAC code (--cond qac or qac+rne); this run was "
                       f"trained with --cond {model.cond}, which has no code weights")
    info = info or DistInfo()
    device = next(model.parameters()).device
    if batch_size < 1:
        raise QACError(f"batch size must be >= 1, got {batch_size}")
    hist = CodeWeights(model.levels, model.code_dim)
    mine = shard(len(data), info)
    for lo in tqdm(range(mine.start, mine.stop, batch_size), disable=not progress, desc="collect", unit="batch"):
        _, idx = model.encode(data.as_float(slice(lo, min(lo + batch_size, mine.stop))).to(device))
        hist.weights += hist.batch_counts(idx.cpu())
    if info.enabled:
        counts = hist.weights.to(device)
        hist.weights.copy_(all_reduce_sum(counts, info).cpu())
    return hist


def collect_run(run: LoadedRun, *, batch_size: int = 256, progress: bool = True,
                info: DistInfo | None = None) -> Path:
    """Encode the run's training set with its EMA encoder and store the offline histogram beside it.

    The run folder is locked by rank 0 for the duration (one writer at a time, see
    :class:`qac.train.lock.RunLock`); under torchrun every rank encodes its block and rank 0 writes.
    """
    info = info or DistInfo()
    with RunLock(run.path, "collect") if info.is_main else contextlib.nullcontext():
        hist = collect_codes(run.model, run.dataset(), batch_size=batch_size, progress=progress, info=info)
        path = run.path / "codes_offline.safetensors"
        if info.is_main:
            path = save_offline_codes(run.path, hist.state_dict(), {"step": run.step, "items": int(hist.total())})
        barrier(info)
    return path
