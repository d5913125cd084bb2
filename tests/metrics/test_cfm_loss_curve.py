"""L_CFM(t) from a σ-space denoiser against closed forms (delta data, Gaussian data)."""

from __future__ import annotations

import math

import pytest
import torch

from qac.errors import QACError
from qac.metrics.cfm import cfm_loss_curve, gaussian_cfm_loss, velocity_cfm_loss_curve


def test_delta_data_exact_denoiser_gives_zero():
    x_star = torch.tensor([0.7, -1.2, 3.0])
    x0 = x_star.repeat(64, 1)
    curve = cfm_loss_curve(lambda x, sigma, xb: x_star.to(x).expand_as(x), x0, [0.01, 0.2, 0.5, 0.9, 0.99],
                           generator=torch.Generator().manual_seed(0), batch_size=20)
    assert max(curve.values()) < 1e-20


@pytest.mark.parametrize("s", [0.5, 2.0])
def test_gaussian_data_matches_closed_form(s):
    dim, n = 4, 6000
    x0 = s * torch.randn(n, dim, generator=torch.Generator().manual_seed(1))
    exact = lambda x, sigma, xb: s * s / (s * s + sigma * sigma) * x
    ts = [0.1, 0.5, 0.8]
    curve = cfm_loss_curve(exact, x0, ts, generator=torch.Generator().manual_seed(2), batch_size=1000)
    summed = cfm_loss_curve(exact, x0, ts, generator=torch.Generator().manual_seed(2), batch_size=1000,
                            per_dim=False)
    for t in ts:
        truth = gaussian_cfm_loss(s, t)
        # per-sample error ~ truth * chi2_dim / dim: relative standard error sqrt(2 / (dim n))
        assert curve[t] == pytest.approx(truth, rel=5 * math.sqrt(2 / (dim * n)))
        assert summed[t] == pytest.approx(dim * curve[t], rel=1e-12)


def test_wrong_denoiser_is_worse_and_condition_sees_clean_batch():
    s = 1.0
    x0 = torch.randn(2000, 2, generator=torch.Generator().manual_seed(3))
    seen = []

    def exact(x, sigma, xb):
        seen.append(xb.shape)
        assert sigma.ndim == 0 and x.dtype == torch.float64
        return s * s / (s * s + sigma * sigma) * x

    good = cfm_loss_curve(exact, x0, [0.5], generator=torch.Generator().manual_seed(4), batch_size=512)[0.5]
    bad = cfm_loss_curve(lambda x, sigma, xb: torch.zeros_like(x), x0, [0.5],
                         generator=torch.Generator().manual_seed(4), batch_size=512)[0.5]
    assert bad > good + 0.5
    assert seen == [torch.Size([512, 2])] * 3 + [torch.Size([464, 2])]
    # an oracle that reads the clean batch (like a perfect code) drives L_CFM to 0
    oracle = cfm_loss_curve(lambda x, sigma, xb: xb, x0, [0.5], generator=torch.Generator().manual_seed(4))
    assert oracle[0.5] < 1e-20


def test_times_must_be_inside_unit_interval():
    with pytest.raises(QACError, match="strictly inside"):
        velocity_cfm_loss_curve(lambda x, t, xb: x, torch.zeros(4, 2), [0.0, 0.5])
    with pytest.raises(QACError):
        cfm_loss_curve(lambda x, s, xb: x, torch.zeros(4, 2), [1.0])
