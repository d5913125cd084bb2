"""Paper-scale training pieces on CPU: accumulation equals the plain step, augmentation labels reach the
network (and are zero at sampling), the DataLoader path equals the in-memory one, recipes, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from qac.data import open_dataset
from qac.errors import QACError
from qac.model import ModelConfig, build_model
from qac.train import TrainConfig, load_snapshot, train
from qac.train.distributed import DistInfo
from qac.train.loop import _LossModule
from qac.train.recipes import RECIPES, resolve_recipe
from qac.train.step import StepTools, plan_batch, resolve_augment, train_step

DIGITS = ModelConfig(arch="digits", cond="qac", code_dim=3, model_channels=8)


def digits_config(**changes) -> TrainConfig:
    base = dict(data="digits", model=DIGITS, steps=4, batch_size=8, lr=1e-3, lr_warmup_steps=1, log_every=2,
                snapshot_every=2, grid_every=10**6, device="cpu", augment=0.5, xflip=True)
    base.update(changes)
    return TrainConfig(**base)


def _one_sgd_step(cfg: TrainConfig, data) -> tuple[dict[str, torch.Tensor], float, torch.Tensor]:
    cfg = resolve_augment(cfg, data.kind, tuple(data.shape))
    torch.manual_seed(0)
    model = build_model(cfg.model, data.kind, data.shape)
    device = torch.device("cpu")
    tools = StepTools(cfg, DistInfo(), device, model)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)  # params move by exactly the gradient
    loss, idx, _ = train_step(_LossModule(model), opt, data, 3, cfg, DistInfo(), device, tools, 1.0)
    return {k: v.clone() for k, v in model.state_dict().items()}, loss, idx


def test_gradient_accumulation_equals_the_unaccumulated_step():
    data = open_dataset("digits", max_items=64)
    full, loss_a, idx_a = _one_sgd_step(digits_config(), data)
    acc, loss_b, idx_b = _one_sgd_step(digits_config(batch_gpu=2), data)
    other, _, _ = _one_sgd_step(digits_config(seed=1), data)
    assert torch.equal(idx_a, idx_b) and loss_a == pytest.approx(loss_b, rel=1e-5)
    moved = 0.0
    for k in full:
        torch.testing.assert_close(acc[k], full[k], rtol=1e-5, atol=1e-6)
        moved = max(moved, float((other[k] - full[k]).abs().max()))
    assert moved > 1e-3  # another seed (other images, noise, augmentation) gives another step


def test_batch_plan_and_its_errors():
    plan = plan_batch(512, 8, 16)
    assert (plan.per_rank, plan.rounds, plan.rows(3, 2)) == (64, 4, slice(224, 240))
    assert plan_batch(12, 2, None).rounds == 1
    for batch, world, gpu in ((10, 1, 4), (9, 2, None), (8, 2, 3)):
        with pytest.raises(QACError, match="not divisible by world size"):
            plan_batch(batch, world, gpu)


def test_augmentation_labels_reach_the_network_and_are_zero_at_sampling(tmp_path, monkeypatch):
    from qac.nn.unet import UNet

    seen: list[torch.Tensor | None] = []
    orig = UNet.embed

    def spy(self, c_noise, code, augment_labels):
        seen.append(None if augment_labels is None else augment_labels.detach().clone())
        return orig(self, c_noise, code, augment_labels)

    monkeypatch.setattr(UNet, "embed", spy)
    train(digits_config(steps=2, augment=1.0, batch_size=16), tmp_path / "r", progress=False)
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["augment"] == 1.0 and saved["model"]["augment_dim"] == 9  # the small preset got the input
    train_labels = [s for s in seen if s is not None]
    assert len(train_labels) == 2 and all(s.shape == (16, 9) for s in train_labels)
    assert all(bool(s[:, 0].ne(0).any()) for s in train_labels)  # x-flips happened and were labelled
    from qac.sampling.generate import generate
    from qac.train.run import load_run

    run = load_run(tmp_path / "r", device="cpu")
    seen.clear()
    out = generate(run.model, [0, 1], code_weights=run.code_weights(), solver="euler", steps=2)
    assert seen and all(s is None for s in seen)  # sampling feeds no label ...
    x, sigma = torch.randn(2, 1, 8, 8), torch.tensor([1.0, 2.0])
    y_q = torch.zeros(2, 3)
    with torch.no_grad():  # ... which equals the zero label (the augment embedding has no bias)
        torch.testing.assert_close(run.model(x, sigma, y_q), run.model(x, sigma, y_q,
                                                                       augment_labels=torch.zeros(2, 9)))
    assert out.samples.shape == (2, 1, 8, 8)


def test_resume_with_augmentation_and_accumulation_is_bitwise(tmp_path):
    cfg = digits_config(batch_gpu=4, model=ModelConfig(arch="digits", code_dim=3, model_channels=8, dropout=0.1))
    train(cfg, tmp_path / "once", progress=False)
    train(cfg.replace(steps=2), tmp_path / "twice", progress=False)
    train(cfg, tmp_path / "twice", resume=True, progress=False)
    for name in ("model", "ema", "codes"):
        a = load_file(str(tmp_path / "once" / "checkpoint" / f"{name}.safetensors"))
        b = load_file(str(tmp_path / "twice" / "checkpoint" / f"{name}.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_dataloader_workers_read_a_folder_lazily_and_train_identically(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    cfg = digits_config(data=str(folder), steps=3, snapshot_every=3)
    train(cfg, tmp_path / "mem", progress=False)
    train(cfg.replace(workers=1), tmp_path / "workers", progress=False)
    a, b = load_snapshot(tmp_path / "mem"), load_snapshot(tmp_path / "workers")
    assert all(torch.equal(a.model[k], b.model[k]) for k in a.model)


def test_recipes_resolve_to_the_documented_numbers():
    assert set(RECIPES) == {"cifar10-edm", "cifar10-qac", "ffhq64-qac", "afhq64-qac"}
    c = resolve_recipe("cifar10-edm")
    assert (c.batch_size, c.lr, c.model.dropout, c.augment, c.ema_halflife_img, c.ema_rampup_ratio) == \
        (512, 1e-3, 0.13, 0.12, 500_000, 0.05)
    assert c.steps * c.batch_size >= 200_000_000 and c.lr_warmup_steps * 512 >= 10_000_000
    assert c.model.cond == "none" and c.model.arch == "cifar10"
    q = resolve_recipe("cifar10-qac")
    assert (q.model.cond, q.model.levels, q.model.code_dim) == ("qac", 2, 20)
    f, a = resolve_recipe("ffhq64-qac"), resolve_recipe("afhq64-qac")
    assert (f.batch_size, f.lr, f.model.dropout, f.augment) == (256, 2e-4, 0.05, 0.15)
    assert (a.model.dropout, a.model.arch, a.steps) == (0.25, "afhq64", 781_250)
    o = resolve_recipe("cifar10-qac", {"lr": 5e-4, "code_dim": 12, "steps": 10, "data": "x.zip"})
    assert (o.lr, o.model.code_dim, o.steps, o.data, o.batch_size) == (5e-4, 12, 10, "x.zip", 512)


def _qac(*args: str):
    from click.testing import CliRunner

    from qac.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.mark.parametrize("args, message", [
    (["--batch", "10", "--batch-gpu", "4"], "not divisible by world size 1 × --batch-gpu 4"),
    (["--amp"], "--amp needs a CUDA device"),
    (["--augment", "1.5"], "--augment must be in [0, 1]"),
    (["--recipe", "cifar100-qac"], "unknown recipe 'cifar100-qac'"),
])
def test_bad_scale_settings_are_one_error_line(tmp_path, args, message):
    res = _qac("train", "--out", str(tmp_path / "r"), "--steps", "1", "--device", "cpu", "--no-progress", *args)
    assert res.exit_code == 2, res.output
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error:") and message in res.stderr
    assert not (tmp_path / "r" / "checkpoint").exists()


def test_info_recipe_prints_the_resolved_config_and_a_labelled_estimate(monkeypatch):
    res = _qac("info", "--recipe", "ffhq64-qac", "--measure-steps", "0", "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["config"]["batch_size"] == 256 and rep["config"]["model"]["code_dim"] == 20
    assert "estimate" not in rep and rep["expects_data"] == "ffhq-64x64.zip"
    import qac.train.throughput as tp

    calls = []
    monkeypatch.setattr(tp, "measure_train", lambda cfg, shape, **kw: calls.append((cfg, shape)) or 100.0)
    res = _qac("info", "--recipe", "cifar10-qac", "--measure-steps", "2")
    assert res.exit_code == 0, res.output
    assert "ESTIMATE" in res.stdout and "images_per_s: 100.0" in res.stdout
    assert f"device_hours: {round(390_625 * 512 / 100 / 3600, 1)}" in res.stdout
    (cfg, shape), = calls
    assert shape == (3, 32, 32) and cfg.model.code_dim == 20 and cfg.augment == 0.12  # the recipe's own step


def test_measured_throughput_is_positive_on_a_small_model():
    from qac.train.throughput import measure_sampling, measure_train

    cfg = digits_config(batch_size=8, batch_gpu=4)
    assert measure_train(cfg, (1, 8, 8), steps=1) > 0
    assert measure_sampling(cfg, (1, 8, 8), batch=4, nfe=2) > 0
