"""Algorithm 2 (paper §4.4): step order, data consistency after every step, seeds vs batch size, code modes."""

from __future__ import annotations

import pytest
import torch

from qac.edit import edit, edit_sigmas, make_degradation
from qac.edit.algorithm import NOISE_STREAM
from qac.errors import QACError
from qac.model import ModelConfig, build_model
from qac.sampling.schedules import make_sigmas
from qac.util import derive_seed, seed_generator


def _model(channels: int = 3, cond: str = "qac"):
    torch.manual_seed(0)
    cfg = ModelConfig(arch="digits", cond=cond, code_dim=4, model_channels=8)
    return build_model(cfg, "image", (channels, 8, 8)).eval().requires_grad_(False)


def _images(n: int, channels: int = 3) -> torch.Tensor:
    return torch.rand(n, channels, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1


@pytest.mark.parametrize("task", ["sr2", "sr4", "sr8", "colorize", "inpaint-box", "inpaint-random", "inpaint-half",
                                  "sr2+inpaint-box"])
def test_kept_part_is_consistent_after_every_step(task):
    model, z = _model(), _images(3)
    deg = make_degradation(task, (3, 8, 8))
    errors = []
    out = edit(model, z, task=deg, seeds=[0, 1], steps=6,
               callback=lambda n, x, zz: errors.append(float(deg.kept_error(x, zz).max())))
    assert len(errors) == 6 and max(errors) < 1e-10
    assert float(out.kept_error.max()) < 1e-10
    assert not torch.allclose(out.results[:, 0], out.results[:, 1])  # seeds differ


def test_matches_an_independent_loop():
    """The library's result equals a plain transcription of Algorithm 2 with the same noise stream."""
    model, z = _model(), _images(1)
    deg = make_degradation("sr2", (3, 8, 8))
    sigmas = make_sigmas("polynomial", 4)
    out = edit(model, z, task=deg, seeds=[11], steps=5)
    gen = seed_generator(derive_seed(11, NOISE_STREAM))
    zz = z.double()
    az = torch.nn.functional.avg_pool2d(zz, 2)
    up = lambda m: m.repeat_interleave(2, -1).repeat_interleave(2, -2)  # noqa: E731
    x = up(az)
    codes = []
    for sigma in sigmas.tolist():
        y, idx = model.encode(x)
        codes.append(int(idx))
        x = x + sigma * torch.randn(3, 8, 8, generator=gen).double()[None]
        x = model(x, sigma, y).double()
        x = x + up(az - torch.nn.functional.avg_pool2d(x, 2))
    torch.testing.assert_close(out.results[0, 0], x[0], rtol=0, atol=1e-9)
    assert out.codes[0, 0].tolist() == codes


def test_results_depend_on_the_seed_not_the_batch():
    model, z = _model(), _images(3)
    a = edit(model, z, task="inpaint-random", seeds=[4, 9], steps=4, batch_size=64)
    b = edit(model, z, task="inpaint-random", seeds=[4, 9], steps=4, batch_size=1)
    c = edit(model, z[2:], task="inpaint-random", seeds=[9], steps=4, batch_size=5)
    torch.testing.assert_close(a.results, b.results, rtol=0, atol=1e-5)
    torch.testing.assert_close(a.results[2:, 1], c.results[:, 0], rtol=0, atol=1e-5)
    assert torch.equal(a.codes[2:, 1], c.codes[:, 0])


def test_code_modes():
    model, z = _model(), _images(2)
    first = make_degradation("sr4", (3, 8, 8)).degrade(z.double())
    _, idx0 = model.encode(first)
    fixed = edit(model, z, task="sr4", seeds=[0], steps=5, code="fixed")
    assert (fixed.codes[:, 0] == idx0[:, None]).all() and fixed.encoder_calls == 1
    adaptive = edit(model, z, task="sr4", seeds=[0], steps=5)
    assert adaptive.code == "adaptive" and adaptive.encoder_calls == 5 and adaptive.denoiser_calls == 5
    assert torch.equal(adaptive.codes[:, 0, 0], idx0)
    base = edit(_model(cond="none"), z, task="sr4", seeds=[0], steps=3)
    assert base.code == "none" and (base.codes == -1).all() and base.encoder_calls == 0
    with pytest.raises(QACError, match="this run has none \\(--cond none\\)"):
        edit(_model(cond="none"), z, task="sr4", code="adaptive")
    with pytest.raises(QACError, match="needs codes"):
        edit(model, z, task="sr4", code="none")


def test_vae_run_is_conditioned_on_its_posterior_mean():
    """A --cond vae run edits with y = mu(x) of the current estimate (adaptive) or of the degraded input
    (fixed); the result equals the loop run by hand with that code, and the code indices are -1."""
    model, z = _model(cond="vae"), _images(1)
    gen = torch.Generator().manual_seed(1)
    for p in model.parameters():  # a fresh model zero-initialises the code path; make the code matter
        p.add_(0.2 * torch.randn(p.shape, generator=gen))
    deg = make_degradation("sr2", (3, 8, 8))
    out = edit(model, z, task=deg, seeds=[5], steps=4)
    assert out.code == "adaptive" and out.encoder_calls == 4 and (out.codes == -1).all()
    gen = seed_generator(derive_seed(5, NOISE_STREAM))
    x, z_meas = deg.degrade(z.double()), deg.measure(z.double())
    for sigma in edit_sigmas(model, 4).tolist():
        mu, _ = model.latent_posterior(x)
        x = x + sigma * torch.randn(3, 8, 8, generator=gen).double()[None]
        x = deg.project(model(x, sigma, mu).double(), z_meas)
    torch.testing.assert_close(out.results[0, 0], x[0], rtol=0, atol=1e-9)
    fixed = edit(model, z, task=deg, seeds=[5], steps=4, code="fixed")
    assert fixed.encoder_calls == 1 and not torch.allclose(fixed.results, out.results)
    with pytest.raises(QACError, match="needs codes"):
        edit(model, z, task=deg, code="none")


def test_schedule_and_bad_arguments():
    model = _model()
    sig = edit_sigmas(model, 40)
    assert len(sig) == 40 and sig[0] == 80 and sig[-1] == 0.002
    torch.testing.assert_close(sig, make_sigmas("polynomial", 39))
    assert edit_sigmas(model, 1).tolist() == [80.0]
    assert edit_sigmas(model, 3, [5.0, 1.0, 0.5]).tolist() == [5.0, 1.0, 0.5]
    with pytest.raises(QACError, match="steps"):
        edit_sigmas(model, 0)
    with pytest.raises(QACError, match="model works on"):
        edit(model, torch.zeros(1, 1, 8, 8), task="sr2")
    with pytest.raises(QACError, match="no images"):
        edit(model, torch.zeros(0, 3, 8, 8), task="sr2")
    with pytest.raises(QACError, match="no seeds"):
        edit(model, torch.zeros(1, 3, 8, 8), task="sr2", seeds=[])
