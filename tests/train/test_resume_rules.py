"""Honest resume: run-time settings change freely, optimisation settings only when named, the rest never."""

from __future__ import annotations

from pathlib import Path

import pytest

from qac.errors import QACError
from qac.model import ModelConfig
from qac.train.config import TrainConfig
from qac.train.resume import override_fields, resume_config

SAVED = TrainConfig(data="toy:moons", model=ModelConfig(arch="mlp", code_dim=3), steps=100, lr=1e-3)
RUN = Path("runs/x")


def test_runtime_changes_are_accepted():
    new = SAVED.replace(steps=500, device="cpu", log_every=7, snapshot_every=9, grid_every=11)
    assert resume_config(SAVED, new, 100, RUN) == new


@pytest.mark.parametrize("change,needle", [
    (dict(data="digits"), "--data 'digits' differs from its 'toy:moons'"),
    (dict(model=ModelConfig(arch="mlp", code_dim=4)), "--code-dim 4 differs from its 3"),
    (dict(model=ModelConfig(arch="mlp", code_dim=3, cond="none")), "--cond 'none'"),
    (dict(batch_size=128), "--batch 128"),
    (dict(seed=1), "--seed 1"),
    (dict(lr=1e-2), "add --override lr"),
    (dict(lr=1e-2, seed=3), "(and 1 more)"),
])
def test_other_changes_are_refused(change, needle):
    with pytest.raises(QACError, match=None) as info:
        resume_config(SAVED, SAVED.replace(**change), 100, RUN)
    assert needle in str(info.value)


def test_named_overrides_are_accepted():
    new = SAVED.replace(lr=1e-4, lr_warmup_steps=0, ema_halflife_img=1000.0)
    assert resume_config(SAVED, new, 100, RUN, overrides=("lr", "warmup", "ema-halflife")) == new
    assert override_fields(["LR", "ema_halflife"]) == {"lr", "ema_halflife_img"}
    with pytest.raises(QACError, match="only lr, warmup, ema-halflife"):
        override_fields(["data"])


def test_steps_below_the_current_step_are_refused():
    with pytest.raises(QACError, match="--steps 50 is below the step 100"):
        resume_config(SAVED, SAVED.replace(steps=50), 100, RUN)
    assert resume_config(SAVED, SAVED, 100, RUN).steps == 100  # equal: nothing to do, not an error
