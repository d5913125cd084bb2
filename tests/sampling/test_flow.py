"""The rectified-flow protocol (schedule 'flow') against a linear-Gaussian model with a closed-form flow map,
and EDM's Heun convention (an odd NFE ends the grid at sigma = 0 with a plain Euler step)."""

from __future__ import annotations

import math

import pytest
import torch

from qac.diffusion import Denoiser, get_formulation
from qac.errors import QACError
from qac.model import ModelConfig, QACModel, build_model
from qac.sampling import sample
from qac.sampling.flow import flow_euler, sample_flow
from qac.sampling.generate import generate
from qac.sampling.spec import SamplingSpec

M, S = 1.0, 0.5  # data N(M, S^2 I)


def exact_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """v(x_t, t) = E[n - x0 | x_t] for x0 ~ N(M, S^2), x_t = (1-t) x0 + t n."""
    t = torch.as_tensor(t, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
    var = (1 - t) ** 2 * S**2 + t**2
    return (t - (1 - t) * S**2) / var * (x - (1 - t) * M) - M


def flow_map(x1: torch.Tensor) -> torch.Tensor:
    """x_0 of the exact ODE from x_1: x_t = (1-t) M + sqrt(var(t)) x_1, so x_0 = M + S x_1."""
    return M + S * x1


class LinearGaussianNet(torch.nn.Module):
    """A backbone whose rf velocity is exact: F(x_t; c_noise = 999 t) = v(x_t, t) (c_in x_sigma = x_t)."""

    code_dim = 0

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # generate() reads the device from a parameter

    def forward(self, x, c_noise, code=None):
        return exact_velocity(x.double(), c_noise.double() / 999).to(x.dtype)


def linear_gaussian_model(dim: int = 3) -> QACModel:
    return QACModel(Denoiser(LinearGaussianNet(), get_formulation("rf")), None, 2, 0, (dim,))


def test_rf_heun_from_t1_matches_the_closed_form_flow_map():
    model = linear_gaussian_model()
    seeds = list(range(16))
    from qac.util import per_seed_randn

    x1 = per_seed_randn(seeds, (3,), dtype=torch.float64)
    errs = []
    for steps in (20, 40):
        out = generate(model, seeds, solver="heun", steps=steps, schedule="flow")
        assert out.nfe == 2 * steps - 1
        errs.append(float((out.samples.double() - flow_map(x1)).abs().max()))
    assert errs[1] < 2e-3 and errs[1] < errs[0]  # the final Euler step dominates: first order in h


def test_rf_heun_two_steps_equals_the_hand_computed_value():
    # x1 = 2: v(2, 1) = 1; predictor 1.5, v(1.5, .5) = 0.2; corrector 2 - .25 (1 + .2) = 1.7;
    # final Euler from t = .5: v(1.7, .5) = 0.44, x0 = 1.7 - .5 * .44 = 1.48 (3 evaluations)
    res = sample_flow(exact_velocity, torch.full((1, 1), 2.0), solver="heun", steps=2)
    assert res.nfe == 3 and res.times.tolist() == [1.0, 0.5, 0.0]
    assert res.samples.item() == pytest.approx(1.48, abs=1e-12)


def test_rk45_in_t_reaches_the_closed_form_and_counts_its_steps():
    x1 = torch.randn(8, 3, dtype=torch.float64)
    res = sample_flow(exact_velocity, x1, solver="rk45", rtol=1e-9, atol=1e-9)
    assert float((res.samples - flow_map(x1)).abs().max()) < 1e-7
    st = res.stats
    assert res.nfe == st["nfe"] == 1 + 6 * (st["accepted"] + st["rejected"]) and st["accepted"] > 0


def test_euler_in_t_equals_euler_in_sigma_on_the_same_grid():
    torch.manual_seed(3)
    model = build_model(ModelConfig(arch="mlp", formulation="rf", cond="none"), "points", (2,))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))  # the output layer starts at zero
    ts = [0.9, 0.6, 0.3, 0.0]
    x_t = torch.randn(5, 2, dtype=torch.float64)
    with torch.no_grad():
        a, _ = flow_euler(lambda x, t: model.velocity(x, t), x_t, ts)
        sig = torch.tensor([t / (1 - t) for t in ts], dtype=torch.float64)
        b = sample(lambda x, s: model(x, s), x_t / (1 - ts[0]) / sig[0], solver="euler", schedule=sig.tolist()).samples
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    assert float((a - x_t).abs().max()) > 1e-3  # the network moved the state


def test_velocity_is_the_denoiser_in_t_coordinates():
    model = build_model(ModelConfig(arch="mlp", formulation="rf", cond="qac", code_dim=2), "points", (2,))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(4, 2, dtype=torch.float64)
    y_q = torch.tensor([[0.0, 1.0]] * 4)
    t = 0.3
    with torch.no_grad():
        d = model(x / (1 - t), t / (1 - t), y_q)
        v = model.velocity(x, t, y_q)
        v1 = model.velocity(x, 1.0, y_q)
    torch.testing.assert_close(d, x - t * v, rtol=1e-10, atol=1e-10)
    assert bool(torch.isfinite(v1).all())


@pytest.mark.parametrize("solver,nfe", [("euler", 4), ("heun", 5)])
def test_flow_sample_k_depends_only_on_seed_k(solver, nfe):
    model = build_model(ModelConfig(arch="mlp", formulation="rf", cond="qac", code_dim=2), "points", (2,))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    from qac.conditions import CodeWeights

    w = CodeWeights(2, 2)
    w.update(torch.arange(4), decay=0.0)
    all_ = generate(model, list(range(6)), code_weights=w, solver=solver, nfe=nfe, schedule="flow", batch_size=4)
    one = generate(model, [4], code_weights=w, solver=solver, nfe=nfe, schedule="flow")
    assert all_.nfe == nfe and one.indices[0] == all_.indices[4]
    torch.testing.assert_close(one.samples[0], all_.samples[4], rtol=1e-6, atol=1e-6)


def test_edm_heun_nfe_35_is_18_steps_with_a_final_euler_step():
    calls: list[float] = []
    seen: list[dict] = []

    def denoise(x, sigma):
        calls.append(float(sigma))
        return 0.3 * x / (1 + float(sigma))

    res = sample(denoise, torch.randn(2, 3), solver="heun", nfe=35, callback=seen.append)
    assert res.nfe == 35 == len(calls) and res.steps == 18
    assert res.sigmas[-1] == 0 and res.sigmas[-2] == pytest.approx(0.002) and min(calls) == pytest.approx(0.002)
    last = seen[-1]  # the step from sigma_min to 0: x + (0 - s)/s (x - D) = D, no corrector
    torch.testing.assert_close(res.samples, last["denoised"])
    assert sample(denoise, torch.randn(2, 3), solver="heun", nfe=36).sigmas[-1] > 0  # even: no final 0


@pytest.mark.parametrize("kwargs,needle", [
    (dict(solver="dpmpp_2m", nfe=5, schedule="flow"), "runs solvers euler, heun, rk45"),
    (dict(solver="rk45", nfe=5, schedule="flow"), "not --nfe"),
    (dict(solver="rk45", nfe=5), "not --nfe"),
    (dict(solver="heun", nfe=5, schedule="karras"), "unknown schedule"),
    (dict(solver="heun", nfe=5, schedule="flow", afs=True), "--afs"),
])
def test_bad_specs_are_refused(kwargs, needle):
    with pytest.raises(QACError, match=needle):
        SamplingSpec(**kwargs)


def test_flow_on_an_edm_model_is_refused():
    model = build_model(ModelConfig(arch="mlp", formulation="edm", cond="none"), "points", (2,))
    with pytest.raises(QACError, match="for rf models"):
        generate(model, [0], solver="heun", nfe=5, schedule="flow")
    with pytest.raises(QACError, match="for rf models"):
        SamplingSpec(solver="heun", nfe=5, schedule="flow").for_formulation("edm")
    assert SamplingSpec(solver="dpmpp_2m", nfe=5).for_formulation("rf").schedule == "polynomial"
    assert not math.isfinite(sample_flow(exact_velocity, torch.ones(1, 1), solver="euler", steps=1).sigmas[0])
