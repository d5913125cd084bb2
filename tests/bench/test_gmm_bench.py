"""The Gaussian-mixture bench: closed forms against independent computations, and the QAC claim, exactly."""

from __future__ import annotations

import math

import pytest
import torch

from qac.bench.gmm import GaussianMixture, bench_mixture, reference_solution
from qac.errors import QACError
from qac.sampling import sample

F64 = torch.float64


def _mc_posterior_mean(gmm, x, sigma, n=400_000):
    """Independent route: importance-weight prior draws by the Gaussian likelihood of x given x0."""
    x0, _ = gmm.sample(n, generator=torch.Generator().manual_seed(0))
    logw = -0.5 * ((x[None, :] - x0) ** 2).sum(1) / sigma**2
    w = torch.softmax(logw, 0)
    return (w[:, None] * x0).sum(0)


def test_denoiser_matches_monte_carlo_posterior_mean():
    gmm = bench_mixture(dim=2, seed=3)
    x = torch.tensor([0.3, -0.4], dtype=F64)
    for sigma in (0.5, 2.0):
        exact = gmm.denoise(x[None], sigma)[0]
        assert torch.allclose(exact, _mc_posterior_mean(gmm, x, sigma), atol=0.01)


def test_denoiser_limits_and_tweedie_gradient():
    gmm = GaussianMixture.create([1.0, 3.0], [[-1.0, 0.0], [1.0, 0.5]], [[0.1, 0.2], [0.3, 0.05]])
    x = torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(gmm.denoise(x, 1e-8), x, atol=1e-6)
    assert torch.allclose(gmm.denoise(x * 1e3, 1e4), gmm.mean().expand(5, 2), atol=1e-3)
    # Tweedie: D = x + sigma^2 grad log p_sigma(x); p_sigma from the closed-form mixture density
    sigma = 0.7
    xg = x.clone().requires_grad_(True)
    var = gmm.variances + sigma**2
    logp = torch.logsumexp(torch.log(gmm.weights) - 0.5 * (((xg[:, None] - gmm.means) ** 2) / var
                                                           + torch.log(2 * math.pi * var)).sum(-1), dim=1)
    (grad,) = torch.autograd.grad(logp.sum(), xg)
    assert torch.allclose(gmm.denoise(x, sigma), x + sigma**2 * grad, atol=1e-10)


def test_conditional_denoiser_and_mixture_identity():
    gmm = bench_mixture(dim=3, seed=2)
    x = torch.randn(6, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor(1.3, dtype=F64)
    r = gmm.responsibilities(x, sigma)
    comp = torch.stack([gmm.denoise_component(x, sigma, torch.full((6,), k)) for k in range(4)], 1)
    assert torch.allclose((r[..., None] * comp).sum(1), gmm.denoise(x, sigma), atol=1e-12)
    per_row = torch.full((6,), 1.3, dtype=F64)  # a [B] sigma gives the same answer
    assert torch.allclose(gmm.denoise(x, per_row), gmm.denoise(x, sigma), atol=1e-12)


def test_sample_moments():
    gmm = bench_mixture(dim=2, seed=0)
    x, k = gmm.sample(50_000, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(x.mean(0), gmm.mean(), atol=0.02)
    assert torch.allclose(x.var(0), gmm.variance(), rtol=0.03)
    assert torch.allclose(torch.bincount(k, minlength=4).double() / 50_000, gmm.weights, atol=0.01)


def test_reference_solution_hits_closed_form_conditional_flow():
    gmm = bench_mixture(dim=2, seed=0)
    noise = torch.randn(8, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
    k = torch.arange(8) % 4
    exact = gmm.conditional_flow(noise * 80, 80.0, 0.002, k)
    assert (reference_solution(gmm.conditional(k), noise) - exact).abs().max() < 1e-8
    grid = torch.tensor([80.0, 3.0, 0.5, 0.002], dtype=F64)
    traj = reference_solution(gmm.conditional(k), noise, sigmas=grid)
    assert traj.shape == (4, 8, 2)
    assert (traj[2] - gmm.conditional_flow(noise * 80, 80.0, 0.5, k)).abs().max() < 1e-8


def test_bad_mixtures_raise():
    with pytest.raises(QACError):
        GaussianMixture.create([1.0], [[0.0, 0.0], [1.0, 1.0]], [0.1, 0.1])
    with pytest.raises(QACError):
        GaussianMixture.create([1.0, 1.0], [[0.0], [1.0]], [0.1, -0.1])


def _direction_change(gmm, denoise, noise, steps=64):
    """Mean over samples of the largest angle (radians) between the slope d(sigma) and the first slope."""
    res = sample(denoise, noise, solver="heun", steps=steps, return_trajectory=True)
    slopes = [(x - denoise(x, s)) / s for x, s in zip(res.trajectory[:-1], res.sigmas[:-1])]
    d0 = slopes[0] / slopes[0].norm(dim=1, keepdim=True)
    cos = torch.stack([(d / d.norm(dim=1, keepdim=True) * d0).sum(1) for d in slopes])
    return torch.arccos(cos.clamp(-1, 1)).max(0).values.mean().item()


def test_true_condition_straightens_trajectories_and_lowers_few_step_error():
    """The QAC paper's claim, exactly: conditioning on the mode straightens the PF-ODE, helps few steps."""
    gmm = bench_mixture(dim=2, seed=0)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(256, 2, generator=gen, dtype=F64)
    k = torch.multinomial(gmm.weights, 256, replacement=True, generator=gen)
    cond = gmm.conditional(k)
    straight_c, straight_u = _direction_change(gmm, cond, noise), _direction_change(gmm, gmm.denoise, noise)
    assert straight_c < 1e-6 < 0.1 < straight_u  # isotropic components: exactly straight lines
    ref_u = reference_solution(gmm.denoise, noise)
    ref_c = gmm.conditional_flow(noise * 80, 80.0, 0.002, k)
    for solver, nfes in (("euler", (2, 4, 6, 8)), ("dpmpp_2m", (4, 6, 8)), ("heun", (4, 6, 8, 10))):
        for nfe in nfes:
            err_u = (sample(gmm.denoise, noise, solver=solver, nfe=nfe).samples - ref_u).norm(dim=1).mean()
            err_c = (sample(cond, noise, solver=solver, nfe=nfe).samples - ref_c).norm(dim=1).mean()
            assert err_c < 0.5 * err_u, (solver, nfe, err_c.item(), err_u.item())
