"""Preconditioning coefficients against their formulas, loss weights, and the rf <-> v-prediction link."""

from __future__ import annotations

import math

import pytest
import torch

from qac.diffusion import FORMULATIONS, Denoiser, denoising_loss, get_formulation
from qac.errors import QACError

SIGMAS = torch.tensor([0.002, 0.05, 0.5, 1.0, 7.3, 80.0], dtype=torch.float64)


def test_edm_coefficients_match_formulas():
    f = get_formulation("edm")
    for s in SIGMAS.tolist():
        t = torch.tensor(s, dtype=torch.float64)
        assert float(f.c_skip(t)) == pytest.approx(0.25 / (s * s + 0.25))
        assert float(f.c_out(t)) == pytest.approx(s * 0.5 / math.sqrt(s * s + 0.25))
        assert float(f.c_in(t)) == pytest.approx(1 / math.sqrt(s * s + 0.25))
        assert float(f.c_noise(t)) == pytest.approx(math.log(s) / 4)


def test_vp_coefficients_and_time_inverse():
    f = get_formulation("vp")
    t = torch.linspace(1e-5, 1, 11, dtype=torch.float64)
    sigma = f.sigma_of_t(t)
    torch.testing.assert_close(f.t_of_sigma(sigma), t, rtol=1e-9, atol=1e-12)
    # sigma(1) for beta_d = 19.9, beta_min = 0.1: sqrt(exp(9.95 + 0.1) - 1) ~= 152.17 (EDM's VP sigma_max)
    assert float(f.sigma_of_t(torch.tensor(1.0, dtype=torch.float64))) == pytest.approx(152.17, abs=0.01)
    s = torch.tensor(2.0, dtype=torch.float64)
    assert float(f.c_out(s)) == -2.0 and float(f.c_skip(s)) == 1.0
    assert float(f.c_in(s)) == pytest.approx(1 / math.sqrt(5))
    assert float(f.c_noise(s)) == pytest.approx(999 * float(f.t_of_sigma(s)))


def test_ve_coefficients():
    f = get_formulation("ve")
    s = torch.tensor(3.0, dtype=torch.float64)
    assert (float(f.c_skip(s)), float(f.c_out(s)), float(f.c_in(s))) == (1.0, 3.0, 1.0)
    assert float(f.c_noise(s)) == pytest.approx(math.log(1.5))


@pytest.mark.parametrize("name", sorted(FORMULATIONS))
def test_loss_weight_times_c_out_squared_is_one(name):
    f = get_formulation(name)
    torch.testing.assert_close(f.loss_weight(SIGMAS) * f.c_out(SIGMAS) ** 2, torch.ones_like(SIGMAS))


@pytest.mark.parametrize("name", sorted(FORMULATIONS))
def test_training_sigma_laws(name):
    f = get_formulation(name)
    gen = torch.Generator().manual_seed(0)
    s = f.sample_sigma(20000, gen, torch.device("cpu"))
    assert s.shape == (20000,) and bool((s > 0).all())
    if name == "edm":  # ln sigma ~ N(-1.2, 1.2^2)
        assert float(s.log().mean()) == pytest.approx(-1.2, abs=0.03)
        assert float(s.log().std()) == pytest.approx(1.2, abs=0.03)
    if name == "ve":  # log-uniform on [0.02, 100]
        assert float(s.min()) >= 0.02 and float(s.max()) <= 100
        assert float(s.log().mean()) == pytest.approx((math.log(0.02) + math.log(100)) / 2, abs=0.05)
    if name == "rf":  # t = sigma/(1+sigma) ~ U(0, 1)
        t = s / (1 + s)
        assert float(t.mean()) == pytest.approx(0.5, abs=0.01)
    if name == "vp":  # t(sigma) ~ U(eps_t, 1)
        assert float(f.t_of_sigma(s.double()).mean()) == pytest.approx(0.5, abs=0.01)


class _ConstV(torch.nn.Module):
    """A backbone returning a fixed field v(x) = A x + b, records what it was called with."""

    code_dim = 0

    def __init__(self):
        super().__init__()
        self.a = torch.tensor([[0.3, -0.2], [0.1, 0.4]])
        self.b = torch.tensor([0.05, -0.1])
        self.seen = []

    def forward(self, x, c_noise, code=None):
        self.seen.append((x.clone(), c_noise.clone()))
        return x @ self.a.T + self.b


def test_rf_denoiser_agrees_with_v_prediction():
    net = _ConstV()
    d = Denoiser(net, get_formulation("rf"))
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(5, 2, generator=gen)
    n = torch.randn(5, 2, generator=gen)
    t = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9])
    x_t = (1 - t[:, None]) * x0 + t[:, None] * n
    sigma = t / (1 - t)
    x_sigma = x_t / (1 - t[:, None])
    out = d(x_sigma, sigma)
    v = x_t @ net.a.T + net.b
    torch.testing.assert_close(out, x_t - t[:, None] * v, rtol=1e-5, atol=1e-6)
    # the network saw x_t itself and c_noise = 999 t
    torch.testing.assert_close(net.seen[-1][0], x_t, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(net.seen[-1][1], 999 * t, rtol=1e-5, atol=1e-4)
    # lambda ||D - x0||^2 == ||v - (n - x0)||^2 (the rectified-flow loss), per element
    loss = denoising_loss(d, x0, sigma, n)
    torch.testing.assert_close(loss, (v - (n - x0)) ** 2, rtol=1e-4, atol=1e-5)


def test_denoiser_keeps_float64_state_and_broadcasts_scalar_sigma():
    net = _ConstV()
    d = Denoiser(net, get_formulation("edm"))
    x = torch.randn(3, 2, dtype=torch.float64)
    out = d(x, torch.tensor(0.7, dtype=torch.float64))
    assert out.dtype == torch.float64 and out.shape == x.shape
    assert net.seen[-1][0].dtype == torch.float32 and net.seen[-1][1].shape == (3,)
    f = get_formulation("edm")
    s = torch.tensor(0.7, dtype=torch.float64)
    expected = f.c_skip(s) * x + f.c_out(s) * ((f.c_in(s) * x).float() @ net.a.T + net.b).double()
    torch.testing.assert_close(out, expected)


def test_unknown_formulation_is_a_user_error():
    with pytest.raises(QACError, match="unknown formulation"):
        get_formulation("ddpm")
