"""Condition encoder E_phi: size relative to the denoiser, shapes, determinism, gradients via the STE."""

from __future__ import annotations

import pytest
import torch

from qac.conditions import build_encoder, code_to_input, encoder_channels, fsq_quantize
from qac.errors import QACError
from qac.nn import MLPConfig, UNet, build_backbone, count_params, unet_preset


def test_encoder_is_about_one_percent_of_cifar10_denoiser():
    cfg = unet_preset("cifar10", code_dim=20)
    with torch.device("meta"):
        ratio = count_params(build_encoder(cfg, 20)) / count_params(UNet(cfg))
    assert 0.005 < ratio <= 0.03
    with torch.device("meta"):
        enc = build_encoder(cfg, 20)
    assert count_params(enc) < 0.8e6  # paper §3.2: "smaller than 0.8M"


def test_encoder_halves_blocks_and_quarters_channels():
    cfg = unet_preset("cifar10")
    with torch.device("meta"):
        enc = build_encoder(cfg, 12)
    assert encoder_channels(128) == 32 and encoder_channels(32) == 8
    # 3 levels x 2 blocks + 2 down blocks; widths 32 * mult = 64
    assert len(enc.blocks) == 3 * 2 + 2
    assert enc.stem.out_channels == 32 and enc.out.in_features == 64
    assert all(b.affine is None for b in enc.blocks)  # no noise embedding


@pytest.mark.parametrize("name", ["digits", "digits16", "mnist", "tiny"])
def test_image_encoder_shapes_and_train_eval_agree(name):
    cfg = unet_preset(name)
    enc = build_encoder(cfg, 6)
    x = torch.randn(3, cfg.in_channels, cfg.img_resolution, cfg.img_resolution)
    y = enc.train()(x)
    assert y.shape == (3, 6)
    torch.testing.assert_close(y, enc.eval()(x))  # no dropout: codes of an image are deterministic


def test_mlp_encoder_shapes():
    enc = build_encoder(MLPConfig(dim=2), 4)
    assert enc(torch.randn(9, 2)).shape == (9, 4)
    assert count_params(enc) == (2 * 128 + 128) + (128 * 128 + 128) + (128 * 4 + 4)


def test_denoiser_loss_trains_encoder_through_ste():
    torch.manual_seed(1)
    den = build_backbone(MLPConfig(dim=2, hidden=32, code_dim=4))
    enc = build_encoder(MLPConfig(dim=2), 4)
    x0 = torch.randn(16, 2)
    y_q = fsq_quantize(enc(x0), 2)
    loss = (den(x0 + 0.5 * torch.randn_like(x0), torch.zeros(16), code_to_input(y_q, 2)) - x0).square().mean()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())


def test_mistakes():
    with pytest.raises(QACError):
        build_encoder(MLPConfig(), 0)
    with pytest.raises(TypeError):
        build_encoder("cifar10", 4)
