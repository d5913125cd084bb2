"""Sample k depends only on seed k: the same noise and code whatever the batch size or batch position."""

from __future__ import annotations

import pytest
import torch

from qac.conditions import CodeWeights
from qac.errors import QACError
from qac.sampling.generate import generate
from qac.train import ModelConfig, build_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(ModelConfig(arch="mlp", cond="qac", code_dim=3), "points", (2,)).eval()


@pytest.fixture(scope="module")
def weights():
    w = CodeWeights(2, 3)
    w.update(torch.tensor([0, 1, 1, 5, 7, 7, 7]), decay=0.0)
    return w


@pytest.mark.parametrize("solver,opts", [("heun", {"steps": 5}), ("ipndm", {"nfe": 4, "afs": True}),
                                         ("edm_sde", {"steps": 4, "S_churn": 20.0})])
def test_sample_k_depends_only_on_seed_k(model, weights, solver, opts):
    seeds = [11, 3, 42, 7, 0]
    full = generate(model, seeds, code_weights=weights, solver=solver, batch_size=5, **opts)
    small = generate(model, seeds, code_weights=weights, solver=solver, batch_size=2, **opts)
    torch.testing.assert_close(full.samples, small.samples, rtol=0, atol=1e-6)  # BLAS may differ by batch size
    assert torch.equal(full.indices, small.indices)
    alone = generate(model, [42], code_weights=weights, solver=solver, **opts)
    torch.testing.assert_close(alone.samples[0], full.samples[2], rtol=0, atol=1e-6)
    assert int(alone.indices[0]) == int(full.indices[2])


def test_codes_come_from_the_weights(model, weights):
    out = generate(model, range(300), code_weights=weights, solver="euler", steps=1)
    counts = torch.bincount(out.indices, minlength=8).double()
    assert set(out.indices.tolist()) <= {0, 1, 5, 7}
    torch.testing.assert_close(counts / 300, weights.probs(), atol=0.08, rtol=0)


def test_fixed_code_and_bad_code(model, weights):
    out = generate(model, [1, 2], indices=torch.tensor(5), solver="euler", steps=2)
    assert out.indices.tolist() == [5, 5]
    with pytest.raises(QACError, match="code indices"):
        generate(model, [1], indices=torch.tensor(8), solver="euler", steps=2)
    with pytest.raises(QACError, match="code weights"):
        generate(model, [1], solver="euler", steps=2)


def test_different_codes_give_different_samples(model):
    a = generate(model, [0], indices=torch.tensor(0), solver="euler", steps=3).samples
    b = generate(model, [0], indices=torch.tensor(7), solver="euler", steps=3).samples
    assert not torch.equal(a, b)
