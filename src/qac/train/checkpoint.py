"""Run folders and crash-safe checkpoints (safetensors weights + JSON, resume state via weights_only).

Layout of a run folder::

    config.json               resolved TrainConfig
    stats.jsonl               one JSON line per report (step, loss, img/s, lr, EMA decay, code stats)
    checkpoint/               the latest good snapshot, replaced as a whole
        model.safetensors     raw weights, keys ``denoiser.*`` (theta) and ``encoder.*`` (phi)
        ema.safetensors       EMA weights, same keys (theta^-, phi^-)
        codes.safetensors     online code weights w (float64, length L^d), Alg. 1 line 13
        resume.pt             optimizer, step, RNG states (plain tensors: torch.load(weights_only=True))
        meta.json             step, images seen, time
    codes_offline.safetensors histogram written by ``qac collect`` (EMA encoder over the training set)
    samples/grid-*.png        periodic sample grids

A snapshot is written to ``checkpoint.tmp/`` and swapped in with renames, so a crash at any moment
leaves either the old or the new snapshot complete (``checkpoint.old/`` is used if the swap was cut).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from qac.errors import QACError
from qac.util import atomic_torch_save, atomic_write_json

CKPT = "checkpoint"


def _state_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def save_checkpoint(run_dir: str | Path, *, model: nn.Module, ema: nn.Module,
                    code_weights: dict[str, torch.Tensor] | None, resume: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write a complete snapshot to ``run_dir/checkpoint`` crash-safely; returns its path."""
    run_dir = Path(run_dir)
    tmp, final, old = run_dir / f"{CKPT}.tmp", run_dir / CKPT, run_dir / f"{CKPT}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_state_tensors(model), str(tmp / "model.safetensors"))
    save_file(_state_tensors(ema), str(tmp / "ema.safetensors"))
    if code_weights is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in code_weights.items()},
                  str(tmp / "codes.safetensors"))
    atomic_torch_save(tmp / "resume.pt", resume)
    atomic_write_json(tmp / "meta.json", meta)
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(run_dir)
    return final


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoint_dir(run_dir: str | Path) -> Path:
    """The folder of the latest complete snapshot (falls back to ``checkpoint.old`` after a cut swap)."""
    run_dir = Path(run_dir)
    for name in (CKPT, f"{CKPT}.old"):
        p = run_dir / name
        if (p / "meta.json").exists():
            return p
    raise QACError(f"no checkpoint in {run_dir} (is it a qac run folder? train one with `qac train`)")


@dataclass(frozen=True)
class Snapshot:
    """Tensors of one snapshot, loaded on the CPU."""

    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    code_weights: dict[str, torch.Tensor] | None
    meta: dict[str, Any]
    path: Path

    def resume_state(self) -> dict[str, Any]:
        return torch.load(self.path / "resume.pt", map_location="cpu", weights_only=True)


def load_snapshot(run_dir: str | Path) -> Snapshot:
    """Load the latest snapshot of a run folder (weights only; nothing executable is unpickled)."""
    path = checkpoint_dir(run_dir)
    codes = path / "codes.safetensors"
    return Snapshot(
        model=load_file(str(path / "model.safetensors")),
        ema=load_file(str(path / "ema.safetensors")),
        code_weights=load_file(str(codes)) if codes.exists() else None,
        meta=json.loads((path / "meta.json").read_text()),
        path=path,
    )


def save_offline_codes(run_dir: str | Path, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Store the offline code histogram next to the online weights (``codes_offline.safetensors``)."""
    path = Path(run_dir) / "codes_offline.safetensors"
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp),
              metadata={k: str(v) for k, v in meta.items()})
    os.replace(tmp, path)
    return path


def load_offline_codes(run_dir: str | Path) -> dict[str, torch.Tensor]:
    """The offline code histogram written by ``qac collect`` (QACError if there is none)."""
    path = Path(run_dir) / "codes_offline.safetensors"
    if not path.exists():
        raise QACError(f"no offline code weights in {run_dir}: run `qac collect --run {run_dir}` first")
    return load_file(str(path))
