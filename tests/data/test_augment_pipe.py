"""EDM's geometric augmentation: every op against its definition on small tensors, labels, p = 0, seeding."""

from __future__ import annotations

import math

import pytest
import torch

from qac.data.augment import (
    AugmentConfig,
    AugmentPipe,
    apply_augment,
    augment_labels,
    draw_augment,
    slice_params,
)
from qac.errors import QACError

OFF = dict(xflip=0, yflip=0, rotate_int=0, translate_int=0, scale=0, rotate_frac=0, aniso=0, translate_frac=0)


def only(op: str, **extra) -> AugmentConfig:
    return AugmentConfig(**{**OFF, op: 1.0, "p": 1.0, **extra})


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def smooth(n: int, batch: int = 1) -> torch.Tensor:
    """A smooth test image (bilinear resampling is near exact on it)."""
    yy, xx = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64),
                            indexing="ij")
    img = torch.sin(xx * 0.3 + 0.5) * torch.cos(yy * 0.2) + 0.3 * xx / n
    return img.expand(batch, 2, n, n).clone()


def test_edm_default_label_is_nine_dims_and_p0_is_identity():
    cfg = AugmentConfig(p=0.0)
    assert cfg.label_dim == 9
    assert AugmentConfig(rotate_int=1, translate_int=1).label_dim == 13
    x = torch.rand(5, 3, 8, 8)
    y, labels = AugmentPipe(cfg)(x, gen())
    assert torch.equal(y, x) and labels.shape == (5, 9) and not labels.any()


def test_p_outside_unit_interval_is_an_error():
    with pytest.raises(QACError, match=r"\[0, 1\]"):
        AugmentConfig(p=1.5)


def test_xflip_and_yflip_mirror_exactly_what_the_label_says():
    x = torch.rand(16, 1, 4, 5)
    for op, dim in (("xflip", 3), ("yflip", 2)):
        y, lab = AugmentPipe(only(op))(x, gen(1))
        assert lab.shape == (16, 1) and set(lab.flatten().tolist()) == {0.0, 1.0}  # a fair coin when fired
        for i in range(16):
            assert torch.equal(y[i], x[i].flip(dim - 1) if lab[i, 0] == 1 else x[i])


def test_rotate_int_is_an_exact_quarter_turn_per_label():
    n = 5
    x = torch.rand(24, 2, n, n)
    y, lab = AugmentPipe(only("rotate_int"))(x, gen(2))
    turns = {(0.0, 0.0): 0, (-1.0, 1.0): 1, (-2.0, 0.0): 2, (-1.0, -1.0): 3}  # (cos k90° - 1, sin k90°)
    seen = set()
    for b in range(24):
        k = turns[tuple(lab[b].tolist())]
        seen.add(k)
        expect = x[b].clone()
        for _ in range(k):  # one turn: content at (x, y) moves to (-y, x) about the centre (x right, y down)
            prev = expect.clone()
            for i in range(n):
                for j in range(n):
                    expect[:, i, j] = prev[:, n - 1 - j, i]
        assert torch.equal(y[b], expect)
    assert seen == {0, 1, 2, 3}


def test_translate_int_shifts_whole_pixels_with_mirrored_borders():
    n = 8
    x = torch.rand(12, 1, n, n)
    y, lab = AugmentPipe(only("translate_int", translate_int_max=0.25))(x, gen(3))
    mirror = lambda i: i if 0 <= i < n else (-i if i < 0 else 2 * n - 2 - i)
    for b in range(12):
        tx, ty = (lab[b] * 0.25 * n).round().long().tolist()
        assert abs(tx) <= 2 and abs(ty) <= 2
        expect = torch.stack([torch.stack([x[b, 0, mirror(i - ty), mirror(j - tx)] for j in range(n)])
                              for i in range(n)])
        assert torch.equal(y[b, 0], expect)
    assert lab.abs().sum() > 0


def _fire(op: str, value: list[float], n: int = 16, **extra) -> tuple[AugmentConfig, dict]:
    cfg = only(op, **extra)
    params = draw_augment(cfg, 1, gen())
    params[op] = torch.tensor([value], dtype=torch.float64)
    return cfg, params


def test_fractional_translation_by_whole_pixels_is_exact_away_from_borders():
    x = torch.rand(1, 2, 16, 16, dtype=torch.float64)
    cfg, params = _fire("translate_frac", [1.0, -0.5])  # std 0.125 * 16 px: +2 px in x, -1 px in y
    y = apply_augment(x, cfg, params)
    torch.testing.assert_close(y[..., 2:14, 4:14], x[..., 3:15, 2:12], rtol=0, atol=1e-10)
    assert augment_labels(cfg, params, (16, 16)).tolist() == [[1.0, -0.5]]


def test_identity_parameters_of_the_wavelet_path_reproduce_the_image():
    x = torch.rand(2, 3, 12, 12, dtype=torch.float64)
    cfg, params = _fire("rotate_frac", [0.0])
    params["rotate_frac"] = torch.tensor([[1e-300], [0.0]], dtype=torch.float64)  # "fired", numerically zero
    torch.testing.assert_close(apply_augment(x, cfg, params), x, rtol=0, atol=1e-10)


def test_fractional_rotation_by_a_quarter_turn_matches_rot90_on_smooth_images():
    x = smooth(32)
    cfg, params = _fire("rotate_frac", [math.pi / 2])
    y = apply_augment(x, cfg, params)
    expect = torch.rot90(x, -1, dims=(2, 3))  # content turns x towards y, as rotate_int with k = 1
    assert float((y - expect)[..., 6:-6, 6:-6].abs().max()) < 5e-3
    lab = augment_labels(cfg, params, (32, 32))
    torch.testing.assert_close(lab, torch.tensor([[-1.0, 1.0]]), rtol=0, atol=1e-6)


def test_isotropic_scale_stretches_a_linear_ramp_about_the_centre():
    n = 32
    ramp = (torch.arange(n, dtype=torch.float64) - (n - 1) / 2).expand(1, 1, n, n).clone()
    cfg, params = _fire("scale", [2.5])  # factor 2^(2.5 * 0.2) = sqrt(2)
    y = apply_augment(ramp, cfg, params)
    torch.testing.assert_close(y[..., 8:-8, 8:-8], ramp[..., 8:-8, 8:-8] / math.sqrt(2), rtol=0, atol=1e-3)
    assert augment_labels(cfg, params, (n, n)).tolist() == [[2.5]]


def test_anisotropic_scale_along_x_and_its_label():
    n = 32
    c = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
    img = torch.stack([c.expand(n, n), c[:, None].expand(n, n)])[None]  # channel 0 = x, channel 1 = y
    cfg, params = _fire("aniso", [5.0, 0.0])  # 2^(5 * 0.2) = 2 along x (r = 0), 1/2 along y
    y = apply_augment(img, cfg, params)
    torch.testing.assert_close(y[0, 0, 8:-8, 8:-8], img[0, 0, 8:-8, 8:-8] / 2, rtol=0, atol=1e-3)
    torch.testing.assert_close(y[0, 1, 12:-12, 12:-12], img[0, 1, 12:-12, 12:-12] * 2, rtol=0, atol=1e-3)
    assert augment_labels(cfg, params, (n, n)).tolist() == [[5.0, 0.0]]


def test_parameters_are_per_image_rows_of_one_seeded_draw():
    cfg = AugmentConfig(p=1.0, rotate_int=1, translate_int=1)
    x = torch.rand(6, 3, 16, 16)
    params = draw_augment(cfg, 6, gen(7))
    assert draw_augment(cfg, 6, gen(7)).keys() == params.keys()
    assert all(torch.equal(v, w) for v, w in zip(params.values(), draw_augment(cfg, 6, gen(7)).values()))
    full = apply_augment(x, cfg, params)
    part = apply_augment(x[2:4], cfg, slice_params(params, slice(2, 4)))
    torch.testing.assert_close(part, full[2:4], rtol=0, atol=1e-5)
    labels = augment_labels(cfg, params, (16, 16))
    assert labels.shape == (6, 13) and labels[:, 0].tolist() == params["xflip"][:, 0].tolist()
