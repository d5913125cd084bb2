"""Run folders and crash-safe checkpoints (safetensors weights + JSON, resume state via weights_only).

Layout of a run folder::

    config.json               resolved TrainConfig
    stats.jsonl               one JSON line per report (step, loss, img/s, lr, EMA decay, code stats)
    checkpoint/               the latest good snapshot, replaced as a whole
        model.safetensors     raw weights, keys ``denoiser.*`` (theta) and ``encoder.*`` (phi)
        ema.safetensors       EMA weights, same keys (theta^-, phi^-)
        codes.safetensors     online code weights w (float64, length L^d), Alg. 1 line 13
        resume.pt             optimizer, step, RNG states (plain tensors: torch.load(weights_only=True))
        meta.json             step, images seen, time, snapshot id
    codes_offline.safetensors histogram written by ``qac collect`` (EMA encoder over the training set)
    samples/grid-*.png        periodic sample grids

A snapshot is written to ``checkpoint.tmp/`` and swapped in with renames, so a crash at any moment
leaves either the old or the new snapshot complete (``checkpoint.old/`` is used if the swap was cut).
Every file of a snapshot carries the same random snapshot id (safetensors header metadata, ``resume.pt``
and ``meta.json``); a reader that raced a swap sees two ids and reads again, so it never mixes snapshots.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from qac.errors import QACError
from qac.safeio import load_plain_torch, read_json, read_safetensors
from qac.util import atomic_torch_save, atomic_write_json

CKPT = "checkpoint"
SNAPSHOT_ID = "snapshot"
READ_ATTEMPTS = 20


def _state_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def save_checkpoint(run_dir: str | Path, *, model: nn.Module, ema: nn.Module,
                    code_weights: dict[str, torch.Tensor] | None, resume: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write a complete snapshot to ``run_dir/checkpoint`` crash-safely; returns its path."""
    run_dir = Path(run_dir)
    tmp, final, old = run_dir / f"{CKPT}.tmp", run_dir / CKPT, run_dir / f"{CKPT}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    sid = {SNAPSHOT_ID: uuid.uuid4().hex}
    save_file(_state_tensors(model), str(tmp / "model.safetensors"), metadata=sid)
    save_file(_state_tensors(ema), str(tmp / "ema.safetensors"), metadata=sid)
    if code_weights is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in code_weights.items()},
                  str(tmp / "codes.safetensors"), metadata=sid)
    atomic_torch_save(tmp / "resume.pt", {**resume, **sid})
    atomic_write_json(tmp / "meta.json", {**meta, **sid})
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
        """Optimizer state and step (``torch.load(weights_only=True)``), checked to be of this snapshot."""
        path = self.path / "resume.pt"
        state = load_plain_torch(path, "resume state")
        if not isinstance(state, dict) or "step" not in state:
            raise QACError(f"resume state {path} is not a qac resume file (no step)")
        sid = self.meta.get(SNAPSHOT_ID)
        if sid is not None and state.get(SNAPSHOT_ID) != sid:
            raise QACError(f"{path} belongs to another snapshot than {self.path / 'meta.json'}: another process "
                           "is writing this run folder")
        return state


def load_snapshot(run_dir: str | Path) -> Snapshot:
    """Load the latest snapshot of a run folder (weights only; nothing executable is unpickled).

    All files are checked to carry the same snapshot id; a read that raced a writer's swap is repeated.
    Damaged files raise a one-line QACError naming the file.
    """
    for attempt in range(READ_ATTEMPTS):
        path = checkpoint_dir(run_dir)
        before = _identity(path)
        try:
            return _read_snapshot(path)
        except _TornRead:
            pass
        except QACError:
            if _identity(path) == before and path == _current_dir(run_dir):
                raise  # nothing moved: the file really is damaged
        time.sleep(0.002 * (attempt + 1))
    raise QACError(f"{run_dir} changed on every read: another process keeps rewriting its checkpoint")


def _current_dir(run_dir: str | Path) -> Path | None:
    try:
        return checkpoint_dir(run_dir)
    except QACError:
        return None


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


class _TornRead(Exception):
    """The files of one read came from different snapshots."""


def _read_snapshot(path: Path) -> Snapshot:
    meta = read_json(path / "meta.json", "checkpoint metadata")
    if not isinstance(meta, dict) or "step" not in meta:
        raise QACError(f"checkpoint metadata {path / 'meta.json'} is not a qac meta.json (no step)")
    model, m1 = read_safetensors(path / "model.safetensors", "model weights")
    ema, m2 = read_safetensors(path / "ema.safetensors", "EMA weights")
    ids = {meta.get(SNAPSHOT_ID), m1.get(SNAPSHOT_ID), m2.get(SNAPSHOT_ID)}
    codes = None
    codes_path = path / "codes.safetensors"
    if codes_path.exists():
        codes, m3 = read_safetensors(codes_path, "code weights")
        ids.add(m3.get(SNAPSHOT_ID))
    if len(ids) > 1:
        raise _TornRead
    return Snapshot(model=model, ema=ema, code_weights=codes, meta=meta, path=path)


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], path: Path, run_dir: Path) -> None:
    """``load_state_dict`` with a one-line QACError when the weights belong to another architecture."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc))
        raise QACError(f"weights in {path}.safetensors do not fit the model described by {run_dir / 'config.json'} "
                       f"({first[:200]})") from None


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
    return read_safetensors(path, "offline code weights")[0]
