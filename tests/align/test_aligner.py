"""Timestep aligner: bit-identity at delta = 0, the evaluation plan, gradients, cache, modes, file, GMM gain."""

from __future__ import annotations

import json
import math

import pytest
import torch

from qac.align import AlignConfig, AlignedDenoise, Aligner, align, bind_model, gmm_target, make_plan
from qac.align.train import _Trainer
from qac.bench.gmm import bench_mixture, reference_solution
from qac.bench.solver_table import table_solvers
from qac.diffusion import Denoiser, get_formulation
from qac.errors import QACError
from qac.model import ModelConfig, build_model
from qac.sampling import get_solver, sample
from qac.sampling.generate import generate, make_denoise
from qac.util import per_seed_randn

SOLVERS = table_solvers()


def _nfe_for(solver: str, afs: bool) -> int:
    """An NFE this solver can spend exactly (two-evaluation solvers need an even/odd count)."""
    return 6 if get_solver(solver).nfe(3, afs, False) == 6 else 5


@pytest.fixture(scope="module")
def qac_model():
    torch.manual_seed(0)
    return build_model(ModelConfig(arch="mlp", cond="qac", code_dim=3), "points", (2,)).eval().requires_grad_(False)


def test_the_table_covers_every_deterministic_solver():
    assert {"euler", "heun", "dpmpp_2m", "dpmpp_3m", "unipc", "deis", "ipndm", "ipndm_v"} <= set(SOLVERS)


@pytest.mark.parametrize("afs", [False, True])
@pytest.mark.parametrize("solver", SOLVERS)
def test_zero_offsets_reproduce_the_sampler_bit_for_bit(qac_model, solver, afs):
    afs = afs and get_solver(solver).afs
    nfe = _nfe_for(solver, afs)
    noise = per_seed_randn(range(6), (2,), dtype=torch.float64)
    y_q = torch.tensor([[0, 1, 1]] * 3 + [[1, 0, 0]] * 3, dtype=torch.float32)
    want = sample(make_denoise(qac_model, y_q), noise, solver=solver, nfe=nfe, afs=afs).samples
    for mode in ("full", "embed"):
        wrap = AlignedDenoise(bind_model(qac_model, y_q), torch.zeros(nfe, dtype=torch.float64), mode=mode)
        got = sample(wrap, noise, solver=solver, nfe=nfe, afs=afs).samples
        assert torch.equal(got, want), (solver, afs, mode)
        assert wrap.calls == nfe
    gmm = bench_mixture(dim=2, seed=1)
    plain = sample(gmm.denoise, noise, solver=solver, nfe=nfe, afs=afs).samples
    wrap = AlignedDenoise(gmm_target(gmm).bind(None), torch.zeros(nfe, dtype=torch.float64))
    wrapped = sample(wrap, noise, solver=solver, nfe=nfe, afs=afs).samples
    assert torch.equal(plain, wrapped)


def test_zero_aligner_through_generate_hook_is_identical(qac_model):
    from qac.conditions import CodeWeights

    w = CodeWeights(2, 3)
    w.update(torch.tensor([0, 1, 5, 7, 7]), decay=0.0)
    plan = make_plan("ipndm", 4, afs=True)
    al = Aligner({"kind": "test"}, plan, "embed", "tm", (0.002, 80.0), (0.0,) * 4)
    a = generate(qac_model, range(7), code_weights=w, solver="ipndm", nfe=4, afs=True)
    b = generate(qac_model, range(7), code_weights=w, solver="ipndm", nfe=4, afs=True, denoise_factory=al.factory())
    assert torch.equal(a.samples, b.samples)
    moved = Aligner({"kind": "test"}, plan, "embed", "tm", (0.002, 80.0), (0.0, -0.3, 0.2, 0.0))
    c = generate(qac_model, range(7), code_weights=w, solver="ipndm", nfe=4, afs=True,
                 denoise_factory=moved.factory())
    assert not torch.equal(a.samples, c.samples)
    with pytest.raises(QACError, match="trained at"):  # another schedule: the nominal levels differ
        generate(qac_model, range(2), code_weights=w, solver="ipndm", nfe=4, afs=True, schedule="logsnr",
                 denoise_factory=al.factory())


def test_plan_maps_evaluations_to_steps():
    assert make_plan("euler", 4).eval_steps == (0, 1, 2, 3)
    assert make_plan("euler", 4, afs=True).eval_steps == (1, 2, 3, 4)
    assert make_plan("heun", 6).eval_steps == (0, 0, 1, 1, 2, 2)
    assert make_plan("unipc", 4).eval_steps == (0, 0, 1, 2)  # the corrector call at sigma_{i+1} is step i's
    p = make_plan("dpmpp_2m", 3)
    assert p.eval_sigmas == pytest.approx(p.sigmas[:3])
    for bad, match in (("rk45", "fixed evaluation count"), ("edm_sde", "stochastic")):
        with pytest.raises(QACError, match=match):
            make_plan(bad, 4)
    with pytest.raises(QACError, match="exactly 3"):
        make_plan("heun", 3)


@pytest.mark.parametrize("solver,nfe", [("heun", 6), ("unipc", 4), ("dpmpp_3m", 4)])
def test_gradients_reach_exactly_the_offsets_of_the_current_step(solver, nfe):
    cfg = AlignConfig(solver=solver, nfe=nfe, loss="tm", pool=8, val=2, cached=False)
    target = gmm_target(bench_mixture(dim=2, seed=0))
    plan = make_plan(solver, nfe)
    tr = _Trainer(target, cfg, plan, None, False, None)
    with torch.no_grad():
        tr.params.u += 0.1 * torch.arange(nfe, dtype=torch.float64)  # away from 0: no accidental zero gradient
    for i in range(plan.steps):
        tr.params.u.grad = None
        x_next, _, _ = tr.replay(torch.arange(4), i)
        if not x_next.requires_grad:
            assert not plan.evals_of_step(i)
            continue
        x_next.pow(2).sum().backward()
        nonzero = torch.nonzero(tr.params.u.grad).flatten().tolist()
        assert nonzero == plan.evals_of_step(i), (i, nonzero)


@pytest.mark.parametrize("loss", ["tm", "sc"])
def test_pool_cache_gives_the_same_offsets_as_replaying_every_prefix(loss):
    target = gmm_target(bench_mixture(dim=2, seed=0))
    common = dict(solver="dpmpp_2m", nfe=3, loss=loss, pool=24, val=8, iters=4, batch=6, teacher_substeps=2)
    a = align(target, AlignConfig(**common, cached=True))
    b = align(target, AlignConfig(**common, cached=False))
    assert any(d != 0 for d in a.delta)
    assert a.delta == pytest.approx(b.delta, rel=1e-9, abs=1e-12)


class _EchoNoise(torch.nn.Module):
    """A backbone that returns its noise label: D = c_skip(s) x + c_out(s) c_noise(t) in closed form."""

    code_dim = 0

    def forward(self, x, c_noise, code=None):
        return c_noise.reshape(-1, *([1] * (x.ndim - 1))).expand_as(x)


def test_embed_moves_only_the_noise_embedding_full_moves_everything():
    f = get_formulation("edm")
    den = Denoiser(_EchoNoise(), f)
    x = torch.randn(3, 2, dtype=torch.float64)
    s, delta = torch.tensor(2.0, dtype=torch.float64), torch.tensor([0.4], dtype=torch.float64)
    tau = 2.0 * math.exp(0.4)

    def base(x, sigma, noise_sigma=None):
        return den(x, sigma, noise_sigma=noise_sigma)

    embed = AlignedDenoise(base, delta, mode="embed")(x, s)
    full = AlignedDenoise(base, delta, mode="full")(x, s)
    t = torch.tensor(tau, dtype=torch.float64)
    torch.testing.assert_close(embed, f.c_skip(s) * x + f.c_out(s) * f.c_noise(t).float().double())
    torch.testing.assert_close(full, f.c_skip(t) * x + f.c_out(t) * f.c_noise(t).float().double())
    zero = AlignedDenoise(base, torch.zeros(1, dtype=torch.float64), mode="embed")(x, s)
    assert torch.equal(zero, den(x, s)) and torch.equal(zero, AlignedDenoise(base, torch.zeros(1), mode="full")(x, s))


def test_qsched_scalars_at_one_change_nothing_and_scale_as_documented():
    x = torch.randn(4, 2, dtype=torch.float64)
    base = lambda x, sigma, noise_sigma=None: 0.3 * x  # noqa: E731
    s = torch.tensor(1.5, dtype=torch.float64)
    ones = torch.ones(1, dtype=torch.float64)
    plain = AlignedDenoise(base, torch.zeros(1))(x, s)
    assert torch.equal(AlignedDenoise(base, torch.zeros(1), out_scale=ones, state_scale=ones)(x, s), plain)
    m, st = torch.tensor([1.2], dtype=torch.float64), torch.tensor([0.9], dtype=torch.float64)
    got = AlignedDenoise(base, torch.zeros(1), out_scale=m, state_scale=st)(x, s)
    torch.testing.assert_close(got, 0.9 * x - 1.2 * (x - 0.3 * x))  # x0 = s x - sigma m eps


def test_file_round_trip_and_refusals(tmp_path):
    target = gmm_target(bench_mixture(dim=2, seed=0))
    al = align(target, AlignConfig(solver="euler", nfe=3, loss="tm", qsched=True, pool=32, val=8, iters=3, batch=8))
    path = al.save(tmp_path / "a.json")
    back = Aligner.load(path)
    assert back.to_dict() == json.loads(path.read_text()) == al.to_dict()
    assert back.delta == al.delta and back.out_scale == al.out_scale and back.plan == al.plan
    back.check(target.identity, solver="euler", nfe=3, afs=False, schedule="polynomial")
    for kw, match in ((dict(solver="heun"), "solver"), (dict(nfe=4), "nfe"), (dict(afs=True), "afs"),
                      (dict(schedule="logsnr"), "schedule")):
        with pytest.raises(QACError, match=match):
            back.check(**kw)
    with pytest.raises(QACError, match="trained for"):
        back.check(gmm_target(bench_mixture(dim=2, seed=1)).identity)
    d = json.loads(path.read_text())
    d["delta"][1] = float("nan")
    (tmp_path / "nan.json").write_text(json.dumps(d))
    with pytest.raises(QACError, match="non-finite"):
        Aligner.load(tmp_path / "nan.json")
    d["delta"] = [0.0]
    (tmp_path / "short.json").write_text(json.dumps(d))
    with pytest.raises(QACError, match="1 values for 3"):
        Aligner.load(tmp_path / "short.json")
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(QACError, match="not an aligner"):
        Aligner.load(tmp_path / "junk.json")
    with pytest.raises(QACError, match="not found"):
        Aligner.load(tmp_path / "missing.json")
    wrap = back.denoiser(target.bind(None))
    with pytest.raises(QACError, match="asked for more"):
        sample(wrap, torch.zeros(1, 2, dtype=torch.float64), solver="euler", schedule=[*al.plan.sigmas[:3], 0.1, 0.002])


def test_divergence_keeps_zero_offsets():
    target = gmm_target(bench_mixture(dim=2, seed=0))
    al = align(target, AlignConfig(solver="euler", nfe=3, loss="tm", pool=32, val=8, iters=3, batch=8, lr=1e30,
                                   delta_max=None))
    assert all(d == 0.0 for d in al.delta)
    assert not any(s.get("accepted") for s in al.stats["steps"])


def test_embed_mode_needs_a_network():
    with pytest.raises(QACError, match="embed"):
        align(gmm_target(), AlignConfig(solver="euler", nfe=3, mode="embed", pool=16, val=4, iters=1))


@pytest.mark.parametrize("loss", ["global", "tm"])
def test_alignment_lowers_the_exact_gmm_error_of_euler_at_nfe_4(loss):
    gmm = bench_mixture(dim=2, seed=0)
    noise = per_seed_randn(range(128), (2,), dtype=torch.float64)  # evaluation seeds, disjoint from the pool
    ref = reference_solution(gmm.denoise, noise, rtol=1e-8, atol=1e-8)
    before = (sample(gmm.denoise, noise, solver="euler", nfe=4).samples - ref).pow(2).mean().sqrt()
    al = align(gmm_target(gmm), AlignConfig(solver="euler", nfe=4, loss=loss, pool=512, val=64, iters=60))
    after = (sample(al.denoiser(gmm_target(gmm).bind(None)), noise, solver="euler", nfe=4).samples - ref)
    after = after.pow(2).mean().sqrt()
    assert after < 0.7 * before, (float(before), float(after))
    assert all(d < 0 for d in al.delta[:3])  # first-order steps look at a lower noise level (tau < sigma)
