"""A A⁻¹ = I and Ω semantics for every operator and task, as property tests over random shapes and data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from qac.edit import TASKS, AvgPool, Compose, Identity, Luminance, MaskOptions, make_degradation
from qac.edit.masks import box_mask, half_mask, png_mask, random_mask
from qac.errors import QACError

OPERATORS = {"identity": Identity(), "sr2": AvgPool(2), "sr4": AvgPool(4), "sr8": AvgPool(8),
             "colorize": Luminance(), "sr2+colorize": Compose((AvgPool(2), Luminance()))}


@pytest.mark.parametrize("name", OPERATORS)
@settings(max_examples=20, deadline=None)
@given(batch=st.integers(1, 3), cells=st.integers(1, 3), seed=st.integers(0, 2**31 - 1))
def test_pinv_is_a_right_inverse(name, batch, cells, seed):
    op = OPERATORS[name]
    gen = torch.Generator().manual_seed(seed)
    size = 8 * cells
    shape = op.measurement_shape((3, size, size))
    m = torch.randn(batch, *shape, generator=gen, dtype=torch.float64)
    assert op.pinv(m).shape == (batch, 3, size, size)
    torch.testing.assert_close(op.forward(op.pinv(m)), m, rtol=0, atol=1e-12)
    x = torch.randn(batch, 3, size, size, generator=gen, dtype=torch.float64)
    assert op.forward(x).shape == (batch, *shape)
    # A⁻¹A is a projection (idempotent), so A⁻¹ is the pseudo-inverse on A's range
    p = op.pinv(op.forward(x))
    torch.testing.assert_close(op.pinv(op.forward(p)), p, rtol=0, atol=1e-12)


def test_operators_match_independent_computations():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float64).reshape(2, 3, 4, 4)
    pooled = x.reshape(2, 3, 2, 2, 2, 2).mean(dim=(3, 5))
    torch.testing.assert_close(AvgPool(2).forward(x), pooled)
    first_row = [pooled[0, 0, 0, 0].item()] * 2 + [pooled[0, 0, 0, 1].item()] * 2
    assert AvgPool(2).pinv(pooled)[0, 0].tolist()[0] == first_row
    y = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    torch.testing.assert_close(Luminance().forward(x)[:, 0], y)
    w = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)
    torch.testing.assert_close(Luminance().pinv(y[:, None])[:, :, 1, 1], y[:, 1, 1, None] * w / w.dot(w))
    gray = torch.full((1, 3, 2, 2), 0.25, dtype=torch.float64)  # BT.601 weights sum to 1
    torch.testing.assert_close(Luminance().forward(gray), torch.full((1, 1, 2, 2), 0.25, dtype=torch.float64))


@pytest.mark.parametrize("task", [t for t in TASKS if t != "inpaint-mask"] + ["sr2+inpaint-box"])
def test_omega_semantics_of_every_task(task):
    """Kept measurements come from z, missing ones from x; the degraded input is zero where Ω = 1."""
    deg = make_degradation(task, (3, 16, 16))
    gen = torch.Generator().manual_seed(1)
    z, x = (torch.randn(2, 3, 16, 16, generator=gen, dtype=torch.float64) for _ in range(2))
    omega = deg.mask.double()
    assert set(omega.unique().tolist()) <= {0.0, 1.0}
    az, ax = deg.measure(z), deg.measure(x)
    torch.testing.assert_close(deg.measure(deg.degrade(z)), az * (1 - omega), rtol=0, atol=1e-12)
    for projection in ("nullspace", "literal"):
        d = make_degradation(task, (3, 16, 16), projection=projection)
        out = d.measure(d.project(x, az))
        torch.testing.assert_close(out, az * (1 - omega) + ax * omega, rtol=0, atol=1e-12)
    torch.testing.assert_close(deg.kept_error(z, z), torch.zeros(2, dtype=torch.float64))


def test_nullspace_projection_keeps_detail_the_literal_one_drops():
    gen = torch.Generator().manual_seed(2)
    z, x = (torch.randn(1, 3, 8, 8, generator=gen, dtype=torch.float64) for _ in range(2))
    lit = make_degradation("sr2", (3, 8, 8), projection="literal")
    null = make_degradation("sr2", (3, 8, 8))
    torch.testing.assert_close(lit.project(x, lit.measure(z)), AvgPool(2).pinv(AvgPool(2).forward(z)))
    out = null.project(x, null.measure(z))
    torch.testing.assert_close(out - AvgPool(2).pinv(AvgPool(2).forward(out)),
                               x - AvgPool(2).pinv(AvgPool(2).forward(x)))  # x's detail within blocks survives
    inp_l = make_degradation("inpaint-box", (3, 8, 8), projection="literal")
    inp_n = make_degradation("inpaint-box", (3, 8, 8))
    torch.testing.assert_close(inp_l.project(x, z), inp_n.project(x, z))  # A⁻¹A = I: the forms agree


def test_masks():
    box = box_mask((1, 8, 6))
    assert box.sum() == 4 * 3 and box[0, 2:6, 1:4].eq(1).all()
    assert half_mask((1, 4, 5))[0, 0].tolist() == [0, 0, 1, 1, 1]
    a, b = random_mask((1, 64, 64), 0.3, seed=5), random_mask((1, 64, 64), 0.3, seed=5)
    assert torch.equal(a, b) and not torch.equal(a, random_mask((1, 64, 64), 0.3, seed=6))
    assert abs(float(a.mean()) - 0.3) < 0.03
    assert random_mask((1, 4, 4), 0.0).sum() == 0 and random_mask((1, 4, 4), 1.0).sum() == 16
    with pytest.raises(QACError, match=r"\[0, 1\]"):
        random_mask((1, 4, 4), 1.5)


def test_png_mask_white_is_missing_and_is_resized(tmp_path):
    arr = np.zeros((4, 4), np.uint8)
    arr[:2, 2:] = 255
    Image.fromarray(arr).save(tmp_path / "m.png")
    m = png_mask(tmp_path / "m.png", (3, 8, 8))
    expected = torch.zeros(1, 8, 8)
    expected[0, :4, 4:] = 1
    assert torch.equal(m, expected)
    deg = make_degradation("inpaint-mask", (3, 8, 8), mask=MaskOptions(png=tmp_path / "m.png"))
    assert torch.equal(deg.mask, expected)


def test_bad_task_inputs():
    with pytest.raises(QACError, match="not divisible"):
        make_degradation("sr8", (1, 12, 12))
    with pytest.raises(QACError, match="RGB"):
        make_degradation("colorize", (1, 8, 8))
    with pytest.raises(QACError, match="unknown editing task"):
        make_degradation("sr3", (1, 8, 8))
    with pytest.raises(QACError, match="needs a mask PNG"):
        make_degradation("inpaint-mask", (1, 8, 8))
    with pytest.raises(QACError, match="at most one"):
        make_degradation("inpaint-box+inpaint-half", (1, 8, 8))


def test_bad_mask_files(tmp_path):
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(tmp_path / "wide.png")
    with pytest.raises(QACError, match="aspect ratio"):
        png_mask(tmp_path / "wide.png", (1, 8, 8))
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "m.jpg")
    with pytest.raises(QACError, match="not a PNG"):
        png_mask(tmp_path / "m.jpg", (1, 8, 8))
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(QACError, match="cannot read mask"):
        png_mask(tmp_path / "junk.png", (1, 8, 8))
    with pytest.raises(QACError, match="does not exist"):
        png_mask(tmp_path / "nope.png", (1, 8, 8))
