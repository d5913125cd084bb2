"""DDPM++ U-Net: EDM parameter counts, shapes, the code path, and block-level closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from qac.errors import QACError
from qac.nn import (
    UNET_PRESETS,
    PositionalEmbedding,
    UNet,
    UNetBlock,
    build_backbone,
    count_params,
    unet_preset,
)
from qac.nn.blocks import Resample, num_groups
from qac.nn.embeddings import init_xavier

CPU_PRESETS = ["digits", "digits16", "mnist", "tiny"]


def _meta_unet(name: str, **kw) -> UNet:
    with torch.device("meta"):
        return UNet(unet_preset(name, **kw))


def test_cifar10_param_count_matches_edm_ddpmpp():
    n = count_params(_meta_unet("cifar10"))
    assert abs(n - 55_733_891) / 55_733_891 < 0.01
    assert n == 55_733_891  # EDM's own count (augment_dim=9)
    assert count_params(_meta_unet("cifar10", augment_dim=0)) == 55_732_739


@pytest.mark.parametrize("name", ["ffhq64", "afhq64"])
def test_64px_param_count(name):
    assert abs(count_params(_meta_unet(name)) - 61.8e6) / 61.8e6 < 0.02


def test_code_dim_adds_exactly_the_code_mlp():
    base = count_params(_meta_unet("cifar10"))
    d, e = 20, 128  # the code MLP maps d -> noise width (128) -> 128
    assert count_params(_meta_unet("cifar10", code_dim=d)) - base == d * e + e + e * e + e


@pytest.mark.parametrize("name", ["cifar10", "ffhq64"])
def test_big_preset_shapes_on_meta(name):
    net = _meta_unet(name, code_dim=12)
    cfg = net.config
    with torch.device("meta"):
        x = torch.empty(2, cfg.in_channels, cfg.img_resolution, cfg.img_resolution)
        out = net(x, torch.empty(2), torch.empty(2, 12), augment_labels=torch.empty(2, 9))
    assert out.shape == x.shape


@pytest.mark.parametrize("name", CPU_PRESETS)
def test_cpu_preset_shapes_and_batch_independence(name):
    net = UNet(unet_preset(name)).eval()
    cfg = net.config
    x = torch.randn(3, cfg.in_channels, cfg.img_resolution, cfg.img_resolution)
    c = torch.randn(3)
    with torch.no_grad():
        out = net(x, c)
        single = net(x[1:2], c[1:2])
    assert out.shape == x.shape and out.dtype == torch.float32
    torch.testing.assert_close(out[1:2], single, rtol=1e-4, atol=1e-6)


def _loud(net: UNet) -> UNet:
    """Undo the ~0 init of the output / residual convs so that differences are well above float noise."""
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            init_xavier(module)
    return net


def test_code_changes_output_and_is_required():
    torch.manual_seed(0)
    net = _loud(UNet(unet_preset("digits", code_dim=4))).eval()
    x, c = torch.randn(2, 1, 8, 8), torch.zeros(2)
    code_a = torch.tensor([[1.0, -1, 1, -1], [1, 1, 1, 1]])
    code_b = -code_a
    with torch.no_grad():
        a, b = net(x, c, code_a), net(x, c, code_b)
    assert (a - b).abs().max() > 1e-3 * a.abs().max()
    with pytest.raises(ValueError, match="code_dim=4"):
        net(x, c)


def test_without_code_dim_code_none_works_and_code_rejected():
    net = UNet(unet_preset("digits")).eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(net(x, torch.zeros(2)), net(x, torch.zeros(2), None))
    with pytest.raises(ValueError):
        net(x, torch.zeros(2), torch.zeros(2, 3))


def test_scalar_noise_label_broadcasts_and_noise_matters():
    net = _loud(UNet(unet_preset("digits"))).eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(net(x, torch.tensor(0.3)), net(x, torch.full((2,), 0.3)))
        assert not torch.allclose(net(x, 0.3), net(x, -1.0))


def test_augment_labels_enter_the_embedding():
    net = _loud(UNet(unet_preset("digits", augment_dim=9))).eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        plain = net(x, torch.zeros(2))
        torch.testing.assert_close(plain, net(x, torch.zeros(2), augment_labels=torch.zeros(2, 9)))
        assert not torch.allclose(plain, net(x, torch.zeros(2), augment_labels=torch.ones(2, 9)))


def test_gradients_reach_every_parameter():
    net = UNet(unet_preset("digits", code_dim=3, augment_dim=2))
    code = torch.randn(2, 3, requires_grad=True)
    out = net(torch.randn(2, 1, 8, 8), torch.randn(2), code, torch.randn(2, 2))
    out.square().sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing
    assert code.grad is not None and code.grad.abs().sum() > 0


def test_positional_embedding_closed_form():
    c = torch.tensor([0.0, 0.5, -2.0])
    for endpoint, denom in [(True, 3), (False, 4)]:
        emb = PositionalEmbedding(8, endpoint=endpoint, flip=False)(c)
        freqs = torch.tensor([(1 / 10000) ** (k / denom) for k in range(4)])
        expect = torch.cat([torch.cos(c[:, None] * freqs), torch.sin(c[:, None] * freqs)], dim=1)
        torch.testing.assert_close(emb, expect)
    flipped = PositionalEmbedding(8, flip=True)(c)
    torch.testing.assert_close(flipped[:, :4], PositionalEmbedding(8, flip=False)(c)[:, 4:])


def test_group_counts_divide_and_follow_edm():
    assert [num_groups(c) for c in (8, 32, 64, 128, 256, 512)] == [2, 8, 16, 32, 32, 32]
    for c in range(1, 300):
        assert c % num_groups(c) == 0


def test_resample_is_avgpool_and_nearest():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    torch.testing.assert_close(Resample("down")(x), torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
    torch.testing.assert_close(Resample("up")(x), x.repeat_interleave(2, 2).repeat_interleave(2, 3))


def test_attention_matches_independent_softmax_attention():
    block = UNetBlock(8, 8, emb_channels=0, attention=True)
    h = torch.randn(2, 8, 3, 3)
    q, k, v = block.qkv(h).reshape(2, 8, 3, 9).unbind(2)
    ref = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    expect = ref.transpose(1, 2).reshape(2, 8, 3, 3)
    torch.testing.assert_close(block._attend(h), expect, rtol=1e-5, atol=1e-6)


def test_block_without_attention_is_residual_times_skip_scale():
    block = UNetBlock(8, 8, emb_channels=4).eval()
    torch.nn.init.zeros_(block.conv1.weight)  # kill the residual branch
    x = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(block(x, torch.randn(2, 4)), x * math.sqrt(0.5))


def test_config_mistakes_are_user_errors():
    with pytest.raises(QACError):
        unet_preset("cifar100")
    with pytest.raises(QACError):
        unet_preset("digits", img_resolution=6, channel_mult=(1, 2, 2))
    with pytest.raises(QACError):
        unet_preset("digits", bogus=1)


def test_registry_builds_every_preset_type():
    assert set(CPU_PRESETS) | {"cifar10", "ffhq64", "afhq64"} <= set(UNET_PRESETS)
    assert isinstance(build_backbone(unet_preset("digits")), UNet)
    with pytest.raises(TypeError):
        build_backbone(object())
