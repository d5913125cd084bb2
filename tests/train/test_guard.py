"""The loss sanity rule and the probe run before each snapshot."""

from __future__ import annotations

import pytest
import torch

from qac.data import open_dataset
from qac.model import ModelConfig, build_model
from qac.train.guard import LOSS_FACTOR, LossGuard, TrainingDiverged, check_batch_memory, probe_loss
from qac.train.loop import _LossModule


def test_rule_refuses_non_finite_and_huge_losses(tmp_path):
    guard = LossGuard(tmp_path, saved_step=10)
    for loss in (3.0, 2.0, 1.0):
        guard.check(loss, 1.0, 0)
    assert guard.problem(0.5 * LOSS_FACTOR * 2.0) is None  # median 2.0: up to 2e6 is sane
    assert "running median 2" in guard.problem(1e14)
    with pytest.raises(TrainingDiverged, match="diverged at step 7 \\(loss=1e\\+14.*checkpoint \\(step 10\\)"):
        guard.check(1e14, 1.0, 7)
    with pytest.raises(TrainingDiverged, match="loss=nan"):
        guard.check(float("nan"), 1.0, 8)
    with pytest.raises(TrainingDiverged, match="gradient norm=inf"):
        guard.check(1.0, float("inf"), 9)
    assert list(guard.history) == [3.0, 2.0, 1.0]  # insane losses never enter the median


def test_record_round_trips_and_old_snapshots_start_empty(tmp_path):
    guard = LossGuard(tmp_path, saved_step=0)
    for loss in (3.0, 2.0, 1.0):
        guard.check(loss, 1.0, 0)
    again = LossGuard(tmp_path, saved_step=3)
    again.load_state_dict(guard.state_dict())
    assert list(again.history) == [3.0, 2.0, 1.0] and again.problem(1e14) is not None
    again.load_state_dict({"step": 3})  # a snapshot written before the record was saved
    assert list(again.history) == [] and again.problem(1e14) is None


def test_before_snapshot_check_names_the_unsaved_weights(tmp_path):
    guard = LossGuard(tmp_path, saved_step=None)
    guard.check(1.0, 1.0, 0)
    guard.check(1.0, 0.0, 1, before_snapshot=True)
    assert list(guard.history) == [1.0]
    with pytest.raises(TrainingDiverged, match="after step 5 \\(weights not saved\\).*no checkpoint was written"):
        guard.check(float("inf"), 0.0, 5, before_snapshot=True)


def test_probe_leaves_rng_untouched_and_flags_nan_weights():
    data = open_dataset("toy:moons:200")
    model = build_model(ModelConfig(arch="mlp", code_dim=3, dropout=None), "points", (2,))
    loss = _LossModule(model)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = probe_loss(loss, model, data, seed=0, step=5, batch=32, device=torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), state)
    assert a == probe_loss(loss, model, data, seed=0, step=5, batch=32, device=torch.device("cpu"))
    assert 0 < a < 100
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    assert probe_loss(loss, model, data, seed=0, step=5, batch=32, device=torch.device("cpu")) != \
        probe_loss(loss, model, data, seed=0, step=5, batch=32, device=torch.device("cpu"))  # NaN != NaN


def test_batch_memory_lower_bound(monkeypatch):
    import qac.safeio
    from qac.errors import QACError

    monkeypatch.setattr(qac.safeio, "available_memory", lambda: 2**30)
    check_batch_memory(64, (3, 32, 32), torch.device("cpu"))
    with pytest.raises(QACError, match="a training batch of 100000 needs at least .* lower --batch"):
        check_batch_memory(100_000, (3, 32, 32), torch.device("cpu"))
