"""Crash safety of snapshots: a cut swap or a failed write never loses the last complete checkpoint."""

from __future__ import annotations

import os

import pytest
import torch

import qac.train.checkpoint as ckpt
from qac.errors import QACError
from qac.train import load_snapshot, save_checkpoint


def _save(run, value, step):
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.fill_(value)
    return save_checkpoint(run, model=model, ema=model, code_weights={"weights": torch.ones(4, dtype=torch.float64)},
                           resume={"step": step}, meta={"step": step})


def test_snapshot_round_trip(tmp_path):
    _save(tmp_path, 1.5, 7)
    snap = load_snapshot(tmp_path)
    assert snap.meta["step"] == 7 and snap.resume_state()["step"] == 7
    assert torch.equal(snap.model["weight"], torch.full((2, 2), 1.5))
    assert snap.code_weights["weights"].dtype == torch.float64


def test_failed_write_keeps_previous_snapshot(tmp_path, monkeypatch):
    _save(tmp_path, 1.0, 1)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "atomic_torch_save", broken)
    with pytest.raises(OSError):
        _save(tmp_path, 2.0, 2)
    snap = load_snapshot(tmp_path)
    assert snap.meta["step"] == 1 and torch.equal(snap.model["weight"], torch.ones(2, 2))


def test_cut_swap_falls_back_to_old(tmp_path):
    _save(tmp_path, 3.0, 3)
    os.replace(tmp_path / "checkpoint", tmp_path / "checkpoint.old")  # crash between the two renames
    assert load_snapshot(tmp_path).meta["step"] == 3
    _save(tmp_path, 4.0, 4)  # the next save recovers a clean layout
    assert load_snapshot(tmp_path).meta["step"] == 4
    assert not (tmp_path / "checkpoint.old").exists() and not (tmp_path / "checkpoint.tmp").exists()


def test_missing_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(QACError, match="no checkpoint"):
        load_snapshot(tmp_path)


def test_resume_file_refuses_executable_pickles(tmp_path):
    _save(tmp_path, 1.0, 1)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"step": 1, "x": Evil()}, tmp_path / "checkpoint" / "resume.pt")
    with pytest.raises(QACError, match="resume.pt holds objects other than plain tensors"):
        load_snapshot(tmp_path).resume_state()


def test_a_read_that_races_a_swap_never_mixes_snapshots(tmp_path, monkeypatch):
    """A writer swaps in snapshot 2 right after the reader has read snapshot 1's model file: the reader must
    notice the two snapshot ids and read again, returning snapshot 2 whole (never model 1 with meta 2)."""
    _save(tmp_path, 1.0, 1)
    real = ckpt.read_safetensors
    calls = []

    def racing(path, what="weights"):
        out = real(path, what)
        calls.append(path.name)
        if len(calls) == 1:  # the writer strikes between the reader's first and second file
            _save(tmp_path, 2.0, 2)
        return out

    monkeypatch.setattr(ckpt, "read_safetensors", racing)
    snap = load_snapshot(tmp_path)
    assert snap.meta["step"] == 2 and torch.equal(snap.model["weight"], torch.full((2, 2), 2.0))
    assert snap.resume_state()["step"] == 2 and len(calls) > 3  # it did read twice


def test_resume_state_of_another_snapshot_is_refused(tmp_path):
    _save(tmp_path, 1.0, 1)
    snap = load_snapshot(tmp_path)
    _save(tmp_path, 2.0, 2)  # resume.pt now belongs to snapshot 2, snap.meta to snapshot 1
    with pytest.raises(QACError, match="belongs to another snapshot"):
        snap.resume_state()


def test_damaged_files_name_themselves(tmp_path):
    _save(tmp_path, 1.0, 1)
    (tmp_path / "checkpoint" / "codes.safetensors").write_bytes(b"junk")
    with pytest.raises(QACError, match="codes.safetensors is damaged"):
        load_snapshot(tmp_path)
