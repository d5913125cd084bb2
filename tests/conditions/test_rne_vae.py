"""RNE, QAC+RNE and the VAE condition: KL closed form, reparameterized noise, beta -> large, one shared backbone,
per-seed VAE codes, save/load round trips, the L_CFM coupling."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from torch import distributions as D

from qac.cli import train_cmds
from qac.conditions import build_encoder
from qac.conditions.modes import CONDITIONS, RNE_BETA, VAE_BETA, gaussian_kl, reparameterize
from qac.errors import QACError
from qac.eval.analysis import code_denoise_fn, training_coupling
from qac.model import COND_MODES, ModelConfig, build_model
from qac.nn import MLPConfig, count_params, unet_preset
from qac.sampling.generate import generate, latent_codes
from qac.train import TrainConfig, train
from qac.train.loop import _LossModule
from qac.train.run import load_run

IMG = ("image", (1, 16, 16))
PTS = ("points", (2,))


def _model(cond: str, where=PTS, **kw):
    arch = "mlp" if where[0] == "points" else "digits"
    torch.manual_seed(0)
    return build_model(ModelConfig(arch=arch, cond=cond, code_dim=3, formulation="rf", **kw), *where)


def _randomize_noise_head(model, scale: float = 0.3) -> None:
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in model.encoder.noise.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen))


def test_registry_cli_and_config_agree():
    assert set(train_cmds.COND_CHOICES) == set(CONDITIONS) == set(COND_MODES)
    assert ModelConfig(cond="rne").kl_weight == RNE_BETA == ModelConfig(cond="qac+rne").kl_weight == 20.0
    assert ModelConfig(cond="vae").kl_weight == VAE_BETA and ModelConfig(cond="rne", beta=3).kl_weight == 3.0
    assert ModelConfig(cond="qac").kl_weight == 0.0 and ModelConfig(cond="qac+rne").codebook_size == 2**8
    assert ModelConfig(cond="vae").codebook_size == 0 == ModelConfig(cond="rne").codebook_size
    with pytest.raises(QACError, match="must be >= 0"):
        ModelConfig(cond="rne", beta=-1.0).validate()
    with pytest.raises(QACError, match="no KL term"):
        ModelConfig(cond="none", beta=1.0).validate()


def test_kl_matches_torch_distributions_and_closed_form():
    gen = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(64, 5, generator=gen, dtype=torch.float64), 2 * torch.randn(64, 5, generator=gen,
                                                                                        dtype=torch.float64)
    ref = D.kl_divergence(D.Normal(mu, (0.5 * logvar).exp()), D.Normal(0.0, 1.0))
    torch.testing.assert_close(gaussian_kl(mu, logvar), ref)
    assert float(gaussian_kl(torch.tensor(2.0), torch.tensor(0.0))) == 2.0  # mu^2 / 2
    assert float(gaussian_kl(torch.zeros(3), torch.full((3,), 1e-7)).min()) >= 0.0  # expm1: no rounding below 0


@pytest.mark.parametrize("where", [PTS, IMG], ids=["mlp", "unet"])
@pytest.mark.parametrize("cond", ["rne", "qac+rne"])
def test_reparameterized_noise_is_mu_plus_std_n_with_the_kl_per_element(cond, where):
    model = _model(cond, where, beta=7.0)
    _randomize_noise_head(model)
    x0 = torch.randn(6, *where[1], generator=torch.Generator().manual_seed(1))
    n = torch.randn_like(x0)
    with torch.no_grad():
        ins = model.training_inputs(x0, n)
        mu, logvar = model.noise_posterior(x0)
    assert mu.shape == x0.shape == logvar.shape and float(mu.abs().mean()) > 0.05
    assert torch.equal(ins.noise, mu + torch.exp(logvar / 2) * n)
    torch.testing.assert_close(ins.kl, 7.0 * gaussian_kl(mu, logvar))
    assert (ins.index is not None) == (cond == "qac+rne") and (ins.code is not None) == (cond == "qac+rne")
    # the L_CFM estimator pairs data with noise the same way
    torch.testing.assert_close(training_coupling(model)(x0, n), ins.noise)


def test_reparameterized_noise_has_the_encoders_mean_and_variance():
    model = _model("rne")
    _randomize_noise_head(model, 0.5)
    x0 = torch.tensor([[0.3, -0.7]]).expand(40_000, 2)
    n = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        z = model.training_inputs(x0, n).noise
        mu, logvar = model.noise_posterior(x0[:1])
    var = logvar.exp()
    assert float((var - 1).abs().max()) > 0.2  # not the independent coupling
    se = (var / len(z)).sqrt()
    assert float(((z.mean(0) - mu[0]).abs() / se).max()) < 4.5
    torch.testing.assert_close(z.var(0), var[0], rtol=0.05, atol=0)


def test_large_beta_pulls_rne_to_the_independent_coupling():
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="mlp", cond="rne", formulation="rf", beta=1e4, model_channels=32), *PTS)
    _randomize_noise_head(model)
    x0 = torch.randn(256, 2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        kl0 = float(gaussian_kl(*model.noise_posterior(x0)).mean())
    assert kl0 > 0.1
    loss_module = _LossModule(model)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(4)
    for _ in range(120):
        xb = torch.randn(64, 2, generator=gen)
        sigma = model.formulation.sample_sigma(64, gen, torch.device("cpu"))
        loss, _ = loss_module(xb, sigma, torch.randn(64, 2, generator=gen))
        opt.zero_grad()
        (loss.sum() / 64).backward()
        opt.step()
    with torch.no_grad():
        mu, logvar = model.noise_posterior(x0)
    assert float(gaussian_kl(mu, logvar).mean()) < kl0 / 1000
    assert float(mu.abs().max()) < 0.05 and float(logvar.abs().max()) < 0.05


@pytest.mark.parametrize("where", [PTS, IMG], ids=["mlp", "unet"])
def test_qac_rne_shares_exactly_one_backbone(where):
    qac, rne, both = (_model(c, where) for c in ("qac", "rne", "qac+rne"))
    code_head, noise_head = count_params(qac.encoder.out), count_params(rne.encoder.noise)
    backbone = count_params(qac.encoder) - code_head
    assert count_params(rne.encoder) - noise_head == backbone
    assert count_params(both.encoder) == backbone + code_head + noise_head
    assert count_params(both) == count_params(qac) + noise_head
    assert count_params(both) == count_params(rne) + code_head + count_params(qac.denoiser.backbone.map_code)
    assert both.encoder.head_names == ("code", "noise")


def test_noise_head_design_and_size():
    """Images: conv3x3(C_feat -> 2C) on the last feature map, bilinear upsampling; points: Linear(128 -> 2D)."""
    cfg = unet_preset("cifar10")
    with torch.device("meta"):
        enc = build_encoder(cfg, {"noise": 0})
    assert count_params(enc.noise) == 64 * 6 * 9 + 6
    assert count_params(build_encoder(MLPConfig(dim=2), {"noise": 0}).noise) == 128 * 4 + 4
    mu, logvar = _model("rne", IMG).noise_posterior(torch.randn(2, 1, 16, 16))
    assert mu.shape == (2, 1, 16, 16) and float(mu.detach().abs().max()) < 1e-3  # starts as N(0, I)


def test_vae_code_is_reparameterized_with_summed_kl_spread_over_elements():
    model = _model("vae", IMG, beta=0.5)
    x0 = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    eps = torch.randn(4, 3, generator=torch.Generator().manual_seed(2))
    n = torch.randn_like(x0)
    ins = model.training_inputs(x0, n, eps)
    mu, logvar = model.latent_posterior(x0)
    assert torch.equal(ins.code, reparameterize(mu, logvar, eps)) and torch.equal(ins.noise, n)
    torch.testing.assert_close(ins.kl.flatten(1).sum(1), 0.5 * gaussian_kl(mu, logvar).sum(1))
    assert ins.index is None
    torch.testing.assert_close(model.training_inputs(x0, n).code, mu)  # no code noise: the posterior mean


def test_vae_generation_is_per_seed_and_batch_size_independent():
    model = _model("vae").eval()
    seeds = [4, 0, 9, 2, 7]
    a = generate(model, seeds, solver="euler", steps=3, batch_size=2)
    b = generate(model, seeds[::-1], solver="euler", steps=3, batch_size=5)
    assert torch.equal(a.samples, b.samples.flip(0))
    assert torch.equal(generate(model, [9], solver="euler", steps=3).samples, a.samples[2:3])
    codes = latent_codes(seeds, 3)
    assert codes.shape == (5, 3) and len({tuple(r.tolist()) for r in codes}) == 5
    assert torch.equal(latent_codes([9], 3), codes[2:3])
    with pytest.raises(QACError, match="fixed code indices"):
        generate(model, seeds, indices=torch.tensor(1), solver="euler", steps=2)


def test_vae_lcfm_binds_the_posterior_mean():
    model = _model("vae").eval()
    x0, x = torch.randn(3, 2), torch.randn(3, 2)
    out = code_denoise_fn(model)(x, torch.tensor(0.5), x0)
    torch.testing.assert_close(out, model(x, torch.tensor(0.5), model.latent_posterior(x0)[0]))
    assert training_coupling(model) is None and training_coupling(_model("qac")) is None


@pytest.mark.parametrize("cond", ["none", "qac", "rne", "qac+rne", "vae"])
def test_save_load_round_trip(tmp_path, cond):
    beta = 2.5 if CONDITIONS[cond].default_beta is not None else None
    cfg = TrainConfig(data="toy:moons:500", model=ModelConfig(arch="mlp", cond=cond, code_dim=2, formulation="rf",
                                                              beta=beta),
                      steps=3, batch_size=16, lr_warmup_steps=1, snapshot_every=3, grid_every=10**6, device="cpu")
    train(cfg, tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    assert run.config == cfg and run.model.cond == cond and run.model.beta == (beta or 0.0)
    saved = load_file(str(tmp_path / "run" / "checkpoint" / "ema.safetensors"))
    state = run.model.state_dict()
    assert saved.keys() == state.keys() and all(torch.equal(saved[k], state[k]) for k in saved)
    assert (run.code_weights() is not None) == (cond in ("qac", "qac+rne"))
    out = generate(run.model, [0, 1], code_weights=run.code_weights(), solver="euler", steps=2)
    assert torch.isfinite(out.samples).all()
    # a config.json written before beta existed loads with the condition's default
    raw = json.loads((tmp_path / "run" / "config.json").read_text())
    raw["model"].pop("beta")
    (tmp_path / "run" / "config.json").write_text(json.dumps(raw))
    assert math.isclose(load_run(tmp_path / "run").model.beta, ModelConfig(cond=cond).kl_weight)


def test_old_mlp_encoder_weights_load():
    """Weights saved before the heads were split keep the MLP code head as ``encoder.net.4``."""
    model = _model("qac")
    state = {k.replace("encoder.out.", "encoder.net.4."): v.clone() + 1 for k, v in model.state_dict().items()}
    fresh = _model("qac")
    fresh.load_state_dict(state)
    assert torch.equal(fresh.encoder.out.weight, state["encoder.net.4.weight"])


def test_info_counts_the_backbone_once_and_each_head():
    from qac.info import describe_preset

    rep = describe_preset("digits16", None, "qac+rne", 2, 12)
    p = rep["params"]
    assert rep["codebook"] == 2**12 and rep["kl_weight"] == RNE_BETA
    assert p["encoder"] == p["encoder_backbone"] + p["encoder_head_code"] + p["encoder_head_noise"]
    assert p["encoder_head_noise"] == 16 * 2 * 9 + 2 and p["encoder_head_code"] == 16 * 12 + 12
    assert describe_preset("digits16", None, "qac", 2, 12)["params"]["encoder_backbone"] == p["encoder_backbone"]
