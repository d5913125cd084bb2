"""sample(): NFE accounting, nfe -> steps, AFS, callbacks/trajectories, statelessness, batch independence."""

from __future__ import annotations

import math

import pytest
import torch

from qac.bench.gmm import bench_mixture
from qac.errors import QACError
from qac.sampling import SOLVERS, get_solver, sample, steps_for_nfe
from qac.util import per_seed_randn

GMM = bench_mixture(dim=3, seed=1)
FIXED = [n for n, e in SOLVERS.items() if e.nfe is not None]


class Spy:
    """Counts calls and records the sigmas the solver asked for."""

    def __init__(self):
        self.sigmas: list[float] = []

    def __call__(self, x, sigma):
        self.sigmas.append(float(sigma))
        return GMM.denoise(x, sigma)


def _gens(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.mark.parametrize("name", FIXED)
def test_counted_nfe_matches_rule(name):
    entry = get_solver(name)
    noise = per_seed_randn(range(3), (3,))
    for steps in (1, 2, 3, 7):
        for afs in (False, True):
            for final_zero in (False, True):
                if final_zero and steps == 1 and name != "euler":
                    continue
                spy = Spy()
                res = sample(spy, noise, solver=name, steps=steps, afs=afs, final_zero=final_zero,
                             generator=_gens(range(3)), S_churn=5.0) if name == "edm_sde" else \
                    sample(spy, noise, solver=name, steps=steps, afs=afs, final_zero=final_zero,
                           **({"generator": _gens(range(3))} if entry.stochastic else {}))
                expected = entry.nfe(steps, afs, final_zero)
                assert res.nfe == len(spy.sigmas) == expected, (steps, afs, final_zero)
                assert 0.0 not in spy.sigmas  # the network is never asked at sigma = 0


def test_rk45_reports_its_nfe():
    stats: dict = {}
    spy = Spy()
    res = sample(spy, per_seed_randn(range(2), (3,)), solver="rk45", steps=4, stats=stats,
                 rtol=1e-6, atol=1e-6)
    assert res.nfe == len(spy.sigmas) == stats["nfe"] == 1 + 6 * (stats["accepted"] + stats["rejected"])
    res0 = sample(GMM.denoise, per_seed_randn(range(2), (3,)), solver="rk45", steps=4, final_zero=True)
    assert res0.nfe == sample(GMM.denoise, per_seed_randn(range(2), (3,)), solver="rk45",
                              schedule=res0.sigmas[:-1].tolist()).nfe  # the jump to 0 is free (FSAL)


@pytest.mark.parametrize("name", FIXED)
def test_nfe_choice_is_exact(name):
    entry = get_solver(name)
    noise = per_seed_randn([0], (3,))
    for nfe in range(1, 9):
        for afs in (False, True):
            possible = any(entry.nfe(s, afs, z) == nfe for s in range(1, 12) for z in (False, True))
            if not possible:
                with pytest.raises(QACError):
                    sample(GMM.denoise, noise, solver=name, nfe=nfe, afs=afs)
                continue
            assert sample(GMM.denoise, noise, solver=name, nfe=nfe, afs=afs).nfe == nfe


def test_nfe_rules_match_reference_table():
    assert steps_for_nfe("heun", 35, final_zero=True) == 18  # EDM CIFAR-10: 18 points, 35 NFE
    assert steps_for_nfe("heun", 5, afs=True) == 3  # AMED-style 2N - 1
    assert steps_for_nfe("ipndm", 5) == 5
    with pytest.raises(QACError):
        steps_for_nfe("heun", 7)  # odd NFE for Heun without AFS
    with pytest.raises(QACError):
        steps_for_nfe("rk45", 10)


def test_afs_replaces_first_call_with_analytic_step():
    noise = per_seed_randn(range(4), (3,))
    seen = []
    spy = Spy()
    res = sample(spy, noise, solver="euler", steps=5, afs=True, callback=lambda d: seen.append(d))
    assert spy.sigmas[0] != 80.0 and len(spy.sigmas) == 4
    x0 = noise.double() * 80
    expected = x0 - 80 * x0 / math.sqrt(1 + 80**2)
    assert torch.allclose(seen[0]["denoised"], expected, rtol=0, atol=1e-12)
    # at sigma_max the analytic step is a good stand-in for a zero-mean-ish mixture
    ref = sample(GMM.denoise, noise, solver="euler", steps=5)
    assert (res.samples - ref.samples).abs().max() < 0.5


def test_callback_and_trajectory_shapes():
    noise = per_seed_randn(range(2), (3,))
    infos = []
    res = sample(GMM.denoise, noise, solver="dpmpp_2m", steps=6, return_trajectory=True,
                 callback=infos.append)
    assert res.trajectory.shape == (7, 2, 3)
    assert torch.equal(res.trajectory[0], noise.double() * 80)
    assert torch.equal(res.trajectory[-1], res.samples)
    assert [d["i"] for d in infos] == list(range(6))
    assert [d["sigma"] for d in infos] == res.sigmas[:-1].tolist()
    assert [d["sigma_next"] for d in infos] == res.sigmas[1:].tolist()
    assert set(infos[0]) == {"i", "sigma", "sigma_next", "x", "denoised"}


@pytest.mark.parametrize("name", list(SOLVERS))
def test_stateless_and_batch_independent(name):
    entry = get_solver(name)
    seeds = [3, 1, 4, 1, 5]
    noise = per_seed_randn(seeds, (3,))
    opts = {"edm_sde": {"S_churn": 10.0}, "rk45": {"rtol": 1e-9, "atol": 1e-9}}.get(name, {})

    def run(rows):
        extra = {"generator": _gens([seeds[r] for r in rows])} if entry.stochastic else {}
        return sample(GMM.denoise, noise[rows], solver=name, steps=6, **extra, **opts).samples

    full = run(list(range(5)))
    again = run(list(range(5)))
    assert torch.equal(full, again)  # no history leaking across calls
    tol = 1e-6 if name == "rk45" else 1e-12  # rk45 shares accepted steps across the batch (documented)
    for k in (0, 3):
        assert torch.allclose(run([k])[0], full[k], rtol=0, atol=tol)


def test_state_dtype_and_unit_noise_scaling():
    noise = torch.randn(4, 3)
    res = sample(lambda x, s: torch.zeros_like(x), noise, solver="euler", steps=1, sigma_max=10.0,
                 sigma_min=0.5)
    assert res.samples.dtype == torch.float64
    assert torch.allclose(res.samples, noise.double() * 0.5)  # D = 0: x_sigma = sigma * noise


def test_user_mistakes_are_qacerrors():
    noise = torch.randn(2, 3)
    with pytest.raises(QACError):
        sample(GMM.denoise, noise, solver="nope", steps=3)
    with pytest.raises(QACError):
        sample(GMM.denoise, noise, solver="euler")
    with pytest.raises(QACError):
        sample(GMM.denoise, noise, solver="euler", steps=3, nfe=3)
    with pytest.raises(QACError):
        sample(GMM.denoise, noise, solver="euler", steps=3, max_order=2)
    with pytest.raises(QACError):
        sample(GMM.denoise, noise, solver="rk45", steps=3, afs=True)
