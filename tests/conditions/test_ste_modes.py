"""Straight-through gradient modes of the FSQ quantizer: same forward codes, closed-form gradients, the CLI and
config plumbing, and old run folders (config.json without ``ste``) loading as the paper's identity gradient."""

from __future__ import annotations

import json
import math

import pytest
import torch

from qac.conditions import fsq_quantize
from qac.conditions.fsq import BOUND_MARGIN, DEFAULT_STE, PAPER_STE, STE_MODES
from qac.errors import QACError
from qac.train import ModelConfig, TrainConfig, train
from qac.train.config import load_config
from qac.train.run import load_run


def _bound(L: int) -> float:
    return math.log(L - 1) + BOUND_MARGIN


def _closed_form(mode: str, y: float, w: float, L: int) -> float:
    """d(w * y_q)/dy for one channel, written out independently of the implementation."""
    s = 1.0 / (1.0 + math.exp(-y))
    c = _bound(L)
    return {
        "identity": w,
        "sigmoid": w * L * s * (1.0 - s),
        "bounded": w if (abs(y) <= c or y * w > 0) else 0.0,
        "softclip": w * (1.0 - math.tanh(y / c) ** 2),
    }[mode]


def _logits_and_weights(L: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(L)
    y = torch.randn(64, 5, generator=gen, dtype=torch.float64) * 4  # many beyond the bound c, both signs
    y[0] = torch.tensor([0.0, _bound(L) + 0.5, -_bound(L) - 0.5, 30.0, -30.0], dtype=torch.float64)
    w = torch.randn(64, 5, generator=gen, dtype=torch.float64)
    w[0] = torch.tensor([1.0, -1.0, -1.0, 2.0, 2.0], dtype=torch.float64)
    return y, w


def test_registry_covers_every_mode_with_documented_functions():
    assert set(STE_MODES) >= {"identity", "sigmoid", "bounded", "softclip"}
    assert PAPER_STE == "identity" and DEFAULT_STE in STE_MODES
    for fn in STE_MODES.values():
        assert fn.__doc__ and "d y_q / d y" in fn.__doc__
    with pytest.raises(QACError, match="straight-through"):
        fsq_quantize(torch.zeros(2, 3), 2, ste="nosuch")


@pytest.mark.parametrize("mode", sorted(STE_MODES))
@pytest.mark.parametrize("L", [2, 3, 5])
def test_forward_codes_are_floor_of_scaled_sigmoid(mode, L):
    y, _ = _logits_and_weights(L)
    q = fsq_quantize(y, L, ste=mode)
    expect = [[min(math.floor(L / (1 + math.exp(-v))), L - 1) for v in row] for row in y.tolist()]
    assert q.tolist() == expect


@pytest.mark.parametrize("mode", sorted(STE_MODES))
@pytest.mark.parametrize("L", [2, 3, 5])
def test_gradient_matches_closed_form(mode, L):
    y, w = _logits_and_weights(L)
    y.requires_grad_(True)
    (w * fsq_quantize(y, L, ste=mode)).sum().backward()
    expect = [[_closed_form(mode, a, b, L) for a, b in zip(ry, rw)] for ry, rw in zip(y.tolist(), w.tolist())]
    torch.testing.assert_close(y.grad, torch.tensor(expect, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_bounded_gradient_blocks_only_outward_steps_beyond_the_bound():
    c = _bound(2)  # 3 for L = 2
    y = torch.tensor([[c + 1.0, c + 1.0, -c - 1.0, -c - 1.0, 0.5]], requires_grad=True)
    w = torch.tensor([[1.0, -1.0, 1.0, -1.0, -1.0]])
    (w * fsq_quantize(y, 2, ste="bounded")).sum().backward()
    # descent moves y by -grad: y > c with grad +1 moves inward (kept), with -1 outward (blocked); mirrored below
    assert y.grad.tolist() == [[1.0, 0.0, 0.0, -1.0, -1.0]]


def test_per_channel_levels_use_per_channel_bounds():
    levels = (2, 5)
    y = torch.tensor([[3.5, 3.5]], requires_grad=True)  # beyond c = 3 for L = 2, inside c = ln 4 + 3 for L = 5
    (-fsq_quantize(y, levels, ste="bounded")).sum().backward()  # gradient -1: descent pushes y outward
    assert y.grad.tolist() == [[0.0, -1.0]]


def test_cli_choices_match_the_registry():
    from qac.cli import train_cmds

    assert train_cmds.STE_CHOICES == tuple(STE_MODES)
    assert train_cmds.STE_DEFAULT == DEFAULT_STE
    assert ModelConfig().ste == DEFAULT_STE


def test_config_validation_names_the_modes():
    with pytest.raises(QACError, match="bounded"):
        TrainConfig(model=ModelConfig(ste="tanh")).validate()
    for mode in STE_MODES:
        TrainConfig(model=ModelConfig(ste=mode)).validate()


def _tiny_run(tmp_path, ste: str):
    model = ModelConfig(arch="mlp", cond="qac", levels=4, code_dim=2, ste=ste)
    cfg = TrainConfig(data="toy:moons:256", model=model, steps=3, batch_size=16, lr_warmup_steps=1, log_every=1,
                      snapshot_every=3, grid_every=10**6, device="cpu")
    train(cfg, tmp_path / ste, progress=False)
    return tmp_path / ste


def test_old_config_without_ste_loads_as_the_paper_gradient(tmp_path):
    other = next(m for m in STE_MODES if m != PAPER_STE)
    run_dir = _tiny_run(tmp_path, other)
    assert load_run(run_dir, device="cpu").model.ste == other  # a saved mode is kept
    cfg_path = run_dir / "config.json"
    saved = json.loads(cfg_path.read_text())
    del saved["model"]["ste"]  # what runs written before the option look like
    cfg_path.write_text(json.dumps(saved))
    assert load_config(cfg_path).model.ste == PAPER_STE
    assert load_run(run_dir, device="cpu").model.ste == PAPER_STE


def test_model_config_literal_lists_exactly_the_registry_modes():
    from qac.conditions.fsq import STE_MODES as registry
    from qac.model import STE_MODES

    assert set(STE_MODES) == set(registry)
