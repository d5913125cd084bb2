"""Algorithm 1 end to end: resume is bitwise, NaN aborts keep the last good checkpoint, EMA and code weights."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from qac.data import ArrayDataset
from qac.errors import QACError
from qac.train import ModelConfig, TrainConfig, TrainingDiverged, ema_beta, load_snapshot, train
from qac.train.run import load_run


def toy_config(**changes) -> TrainConfig:
    model = changes.pop("model", ModelConfig(arch="mlp", cond="qac", code_dim=4))
    base = dict(data="toy:moons:2000", model=model, steps=12, batch_size=32, lr=2e-3, lr_warmup_steps=4,
                log_every=3, snapshot_every=6, grid_every=10**6, grid_size=16, grid_steps=3, device="cpu")
    base.update(changes)
    return TrainConfig(**base)


def _files(run):
    ck = run / "checkpoint"
    return {n: load_file(str(ck / f"{n}.safetensors")) for n in ("model", "ema", "codes")
            if (ck / f"{n}.safetensors").exists()}


def _assert_bitwise(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].keys() == b[name].keys()
        for k in a[name]:
            assert torch.equal(a[name][k], b[name][k]), f"{name}:{k} differs"


@pytest.mark.parametrize("model", [
    ModelConfig(arch="mlp", cond="qac", code_dim=4),
    ModelConfig(arch="digits", cond="qac", code_dim=3, model_channels=8, dropout=0.2),
    ModelConfig(arch="mlp", cond="none"),
    ModelConfig(arch="mlp", cond="rne", formulation="rf"),
    ModelConfig(arch="mlp", cond="qac+rne", code_dim=4, formulation="rf"),
    ModelConfig(arch="mlp", cond="vae", code_dim=4, formulation="rf"),
    ModelConfig(arch="digits", cond="qac+rne", code_dim=3, model_channels=8, dropout=0.2),
    ModelConfig(arch="digits", cond="vae", code_dim=3, model_channels=8),
], ids=["mlp", "unet-dropout", "mlp-none", "mlp-rne", "mlp-qac+rne", "mlp-vae", "unet-qac+rne-edm", "unet-vae-edm"])
def test_resume_is_bitwise_identical(tmp_path, model):
    data = "toy:moons:2000" if model.arch == "mlp" else "digits"
    cfg = toy_config(model=model, data=data, steps=8, snapshot_every=4, batch_size=16, xflip=model.arch != "mlp")
    train(cfg, tmp_path / "once", progress=False)
    train(cfg.replace(steps=4), tmp_path / "twice", progress=False)
    assert load_snapshot(tmp_path / "twice").meta["step"] == 4
    train(cfg, tmp_path / "twice", resume=True, progress=False)
    once = _files(tmp_path / "once")
    assert ("codes" in once) == model.condition.codebook
    _assert_bitwise(once, _files(tmp_path / "twice"))
    # the loss guard's record of sane losses survives the resume: the same 8 losses as the unbroken run
    hist = [torch.load(tmp_path / r / "checkpoint" / "resume.pt", weights_only=True)["loss_history"]
            for r in ("once", "twice")]
    assert len(hist[0]) == 8 and torch.equal(hist[0], hist[1])
    # the stats of the second half continue the first
    steps = [json.loads(line)["step"] for line in (tmp_path / "twice" / "stats.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 8


def test_resume_state_loads_with_weights_only(tmp_path):
    train(toy_config(steps=3, snapshot_every=3), tmp_path / "r", progress=False)
    state = torch.load(tmp_path / "r" / "checkpoint" / "resume.pt", weights_only=True)
    assert state["step"] == 3 and "state" in state["optimizer"]


def test_nan_data_is_refused_before_training_and_keeps_the_run(tmp_path):
    run = tmp_path / "r"
    train(toy_config(steps=6, snapshot_every=6), run, progress=False)
    before = _files(run)
    bad = ArrayDataset(torch.full((64, 2), float("nan")), None, "points", "nan-points")
    with pytest.raises(QACError, match="'nan-points' holds NaN or Inf values in 64 of 64 items") as info:
        train(toy_config(steps=9, snapshot_every=1), run, resume=True, progress=False, data=bad)
    assert not isinstance(info.value, TrainingDiverged)  # not reported as "lower the learning rate"
    _assert_bitwise(before, _files(run))
    assert load_snapshot(run).meta["step"] == 6


def test_blow_up_keeps_the_last_sane_snapshot(tmp_path):
    """lr = 1e6 makes the first update explode; no snapshot holding those weights may replace the good one."""
    run = tmp_path / "r"
    train(toy_config(steps=6, snapshot_every=6), run, progress=False)
    before = _files(run)
    with pytest.raises(TrainingDiverged, match="last good checkpoint \\(step 6\\)"):
        train(toy_config(steps=12, snapshot_every=1, lr=1e6), run, resume=True, progress=False, overrides=("lr",))
    _assert_bitwise(before, _files(run))
    loaded = load_run(run, device="cpu")
    from qac.sampling.generate import generate

    out = generate(loaded.model, range(8), code_weights=loaded.code_weights(), solver="euler", steps=3)
    assert bool(torch.isfinite(out.samples).all())


def test_existing_run_needs_resume(tmp_path):
    train(toy_config(steps=2, snapshot_every=2), tmp_path / "r", progress=False)
    with pytest.raises(QACError, match="already holds a run"):
        train(toy_config(steps=2), tmp_path / "r", progress=False)


def test_online_code_weights_follow_the_parameter_ema(tmp_path):
    """w <- mu w + (1 - mu) counts with mu = the parameter EMA decay: starting from w = 0 with mu_0 = 0,
    sum(w) equals the batch size exactly after every step (Alg. 1 line 13)."""
    cfg = toy_config(steps=5, snapshot_every=5, batch_size=32)
    train(cfg, tmp_path / "r", progress=False)
    w = load_file(str(tmp_path / "r" / "checkpoint" / "codes.safetensors"))["weights"]
    assert w.dtype == torch.float64 and w.numel() == 2**4
    assert float(w.sum()) == pytest.approx(32.0, rel=1e-12)
    assert bool((w >= 0).all())


def test_ema_schedule_matches_edm():
    assert ema_beta(0, 64, 500_000, 0.05) == 0.0
    # ramp-up: half-life = min(500k, 0.05 * nimg)
    assert ema_beta(10_000, 64, 500_000, 0.05) == pytest.approx(0.5 ** (64 / 500))
    assert ema_beta(10**9, 512, 500_000, 0.05) == pytest.approx(0.5 ** (512 / 500_000))
    assert ema_beta(0, 64, 1000, None) == pytest.approx(0.5 ** (64 / 1000))


def test_encoder_learns_through_the_straight_through_estimator(tmp_path):
    cfg = toy_config(steps=4, snapshot_every=4, lr_warmup_steps=0)
    torch.manual_seed(cfg.seed)
    from qac.train import build_model

    init = build_model(cfg.model, "points", (2,))
    train(cfg, tmp_path / "r", progress=False)
    run = load_run(tmp_path / "r", device="cpu", ema=False)
    changed = [not torch.equal(a, b) for a, b in zip(init.encoder.parameters(), run.model.encoder.parameters())]
    assert all(changed), "every encoder tensor must receive gradient through y_q"


def test_baseline_has_no_encoder_or_codes(tmp_path):
    cfg = toy_config(model=ModelConfig(arch="mlp", cond="none"), steps=3, snapshot_every=3)
    train(cfg, tmp_path / "b", progress=False)
    assert not (tmp_path / "b" / "checkpoint" / "codes.safetensors").exists()
    run = load_run(tmp_path / "b", device="cpu")
    assert run.model.encoder is None and run.code_weights() is None
    assert not any(k.startswith("encoder.") for k in load_snapshot(tmp_path / "b").model)


def test_loss_decreases_on_toy_data(tmp_path):
    cfg = toy_config(steps=150, snapshot_every=150, log_every=25)
    train(cfg, tmp_path / "r", progress=False)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "r" / "stats.jsonl").read_text().splitlines()]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0]


def test_sigint_finishes_the_step_and_writes_a_checkpoint(tmp_path, monkeypatch):
    """A first Ctrl-C stops at a step boundary with a fresh snapshot; --resume then finishes bit for bit."""
    import os
    import signal

    import qac.train.loop as loop

    real_step = loop._train_step

    def step_then_interrupt(*args, **kwargs):
        out = real_step(*args, **kwargs)
        if args[3] == 4:  # during step index 4 (the fifth step)
            os.kill(os.getpid(), signal.SIGINT)
        return out

    cfg = toy_config(steps=10, snapshot_every=100)
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN under nohup
    monkeypatch.setattr(loop, "_train_step", step_then_interrupt)
    summary = train(cfg, tmp_path / "cut", progress=False)
    assert summary.interrupted and summary.step == 5 and summary.signal == signal.SIGINT
    assert load_snapshot(tmp_path / "cut").meta["step"] == 5
    assert signal.getsignal(signal.SIGINT) == before  # handler restored
    monkeypatch.setattr(loop, "_train_step", real_step)
    train(cfg, tmp_path / "cut", resume=True, progress=False)
    train(cfg, tmp_path / "once", progress=False)
    _assert_bitwise(_files(tmp_path / "once"), _files(tmp_path / "cut"))


def test_paper_scale_codebook_2_pow_20(tmp_path):
    """L = 2, d = 20: a million-entry online histogram trains, saves and samples."""
    cfg = toy_config(model=ModelConfig(arch="mlp", cond="qac", levels=2, code_dim=20), steps=3, snapshot_every=3)
    train(cfg, tmp_path / "r", progress=False)
    run = load_run(tmp_path / "r", device="cpu")
    w = run.code_weights()
    assert w.weights.numel() == 2**20 and float(w.weights.sum()) == pytest.approx(32.0)
    from qac.sampling.generate import generate

    out = generate(run.model, range(8), code_weights=w, solver="euler", steps=2)
    assert bool((w.weights[out.indices] > 0).all())
