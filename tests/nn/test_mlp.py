"""Toy MLP backbone: shapes, parameter count closed form, code path."""

from __future__ import annotations

import pytest
import torch

from qac.errors import QACError
from qac.nn import MLPConfig, MLPDenoiser, build_backbone, count_params
from qac.nn.embeddings import init_xavier


def _lin(i: int, o: int) -> int:
    return i * o + o


def test_param_count_closed_form():
    cfg = MLPConfig(dim=2, hidden=256, depth=3, emb_dim=64, code_dim=5)
    h, e = 256, 64
    expect = (_lin(5, e) + _lin(e, e)  # code MLP
              + _lin(e, h) + _lin(h, h)  # mapping
              + _lin(2, h) + 3 * 2 * _lin(h, h) + _lin(h, 2))
    assert count_params(build_backbone(cfg)) == expect


def test_shapes_scalar_noise_and_batch_independence():
    net = MLPDenoiser(MLPConfig(dim=3, hidden=32)).eval()
    x = torch.randn(7, 3)
    out = net(x, 0.5)
    assert out.shape == (7, 3) and out.dtype == torch.float32
    torch.testing.assert_close(out, net(x, torch.full((7,), 0.5)))
    torch.testing.assert_close(out[2:3], net(x[2:3], 0.5))


def test_code_changes_output_and_is_required():
    net = MLPDenoiser(MLPConfig(hidden=32, code_dim=2))
    init_xavier(net.out)
    x = torch.randn(4, 2)
    a = net(x, torch.zeros(4), torch.ones(4, 2))
    b = net(x, torch.zeros(4), -torch.ones(4, 2))
    assert (a - b).abs().max() > 1e-3 * a.abs().max()
    with pytest.raises(ValueError):
        net(x, torch.zeros(4))
    with pytest.raises(ValueError):
        MLPDenoiser(MLPConfig(hidden=32))(x, torch.zeros(4), torch.ones(4, 2))


def test_gradients_reach_every_parameter_and_the_code():
    net = MLPDenoiser(MLPConfig(hidden=16, code_dim=3))
    code = torch.randn(5, 3, requires_grad=True)
    net(torch.randn(5, 2), torch.randn(5), code).square().sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    assert code.grad.abs().sum() > 0


def test_bad_config_is_user_error():
    with pytest.raises(QACError):
        MLPConfig(emb_dim=5)
    with pytest.raises(QACError):
        MLPConfig(depth=0)


def test_config_json_round_trip_for_both_backbones():
    import json

    from qac.nn import config_from_dict, config_to_dict, unet_preset

    for cfg in (MLPConfig(hidden=8, code_dim=3), unet_preset("cifar10", code_dim=20)):
        back = config_from_dict(json.loads(json.dumps(config_to_dict(cfg))))
        assert back == cfg and type(back) is type(cfg)
    with pytest.raises(QACError):
        config_from_dict({"type": "transformer"})
    with pytest.raises(QACError):
        config_from_dict({"type": "mlp", "widht": 3})


def test_augment_labels_rejected():
    with pytest.raises(ValueError):
        MLPDenoiser(MLPConfig(hidden=8))(torch.zeros(2, 2), 0.0, augment_labels=torch.zeros(2, 9))
