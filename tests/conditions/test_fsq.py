"""FSQ quantizer (paper §3.2): forward values, straight-through gradient, mixed-radix indices."""

from __future__ import annotations

import math

import pytest
import torch

from qac.conditions import (
    code_to_input,
    codebook_size,
    codes_to_index,
    fsq_quantize,
    index_to_codes,
)
from qac.errors import QACError


@pytest.mark.parametrize("L", [2, 3, 4, 7])
def test_forward_is_floor_of_scaled_sigmoid(L):
    y = torch.randn(256, 6, dtype=torch.float64) * 3
    q = fsq_quantize(y, L)
    rows = [[min(math.floor(L / (1 + math.exp(-v))), L - 1) for v in row] for row in y.tolist()]
    expect = torch.tensor(rows, dtype=torch.float64)
    assert torch.equal(q, expect)
    assert torch.equal(q, q.round()) and q.min() >= 0 and q.max() <= L - 1


def test_sigmoid_rounding_to_one_is_clamped():
    y = torch.tensor([[50.0, 1e8, -1e8, 17.0]])
    assert torch.sigmoid(torch.tensor(50.0)) == 1.0  # the case the clamp exists for
    assert fsq_quantize(y, 4).tolist() == [[3.0, 3.0, 0.0, 3.0]]
    assert fsq_quantize(y, 2).tolist() == [[1.0, 1.0, 0.0, 1.0]]


def test_paper_straight_through_gradient_is_identity():
    y = torch.randn(5, 4, requires_grad=True)
    w = torch.randn(5, 4)
    (w * fsq_quantize(y, 3, ste="identity")).sum().backward()
    assert torch.equal(y.grad, w)


def test_per_channel_levels():
    y = torch.full((1, 3), 0.2)  # sigmoid(0.2) = 0.5498
    assert fsq_quantize(y, (2, 3, 5)).tolist() == [[1.0, 1.0, 2.0]]
    assert codebook_size((2, 3, 5), 3) == 30
    idx = codes_to_index(torch.tensor([[1.0, 2.0, 4.0]]), (2, 3, 5))
    assert idx.item() == 1 + 2 * 2 + 4 * 6


def test_index_examples_first_channel_least_significant():
    codes = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]])
    assert codes_to_index(codes, 2).tolist() == [1, 2, 4, 7]
    assert codes_to_index(torch.tensor([[3.0, 2.0]]), 4).item() == 3 + 2 * 4


@pytest.mark.parametrize("L,d", [(2, 20), (4, 10), (3, 7), (2, 1)])
def test_index_codes_round_trip(L, d):
    gen = torch.Generator().manual_seed(L * 100 + d)
    codes = torch.randint(0, L, (500, d), generator=gen).float()
    idx = codes_to_index(codes, L)
    assert idx.dtype == torch.int64 and idx.min() >= 0 and idx.max() < L**d
    assert torch.equal(index_to_codes(idx, L, d), codes)
    all_idx = torch.randint(0, L**d, (500,), generator=gen)
    assert torch.equal(codes_to_index(index_to_codes(all_idx, L, d), L), all_idx)


def test_full_codebook_enumeration_is_a_bijection():
    codes = index_to_codes(torch.arange(3**4), 3, 4)
    assert len({tuple(c) for c in codes.tolist()}) == 81
    assert torch.equal(codes_to_index(codes, 3), torch.arange(81))


def test_index_accepts_ste_codes_with_grad():
    y = torch.randn(8, 5, requires_grad=True)
    q = fsq_quantize(y, 2)
    assert torch.equal(codes_to_index(q, 2), codes_to_index(q.detach(), 2))


def test_code_to_input_range():
    for L in (2, 3, 8):
        codes = torch.arange(L, dtype=torch.float32)[:, None]
        x = code_to_input(codes, L)
        assert x[0].item() == -1.0 and x[-1].item() == 1.0
        torch.testing.assert_close(x[1:] - x[:-1], torch.full((L - 1, 1), 2 / (L - 1)))


def test_mistakes():
    with pytest.raises(QACError):
        codebook_size(1, 4)
    with pytest.raises(QACError):
        codebook_size(2, 63)  # beyond int64 sanity
    assert codebook_size(2, 62) == 2**62
    with pytest.raises(QACError):
        fsq_quantize(torch.zeros(2, 3), (2, 2))
    with pytest.raises(QACError):
        index_to_codes(torch.tensor([16]), 2, 4)
    with pytest.raises(ValueError):
        codes_to_index(torch.tensor([[2.0]]), 2)


def test_sigmoid_ste_gradient_is_l_times_sigmoid_derivative():
    y = torch.tensor([[-3.0, -0.2, 0.0, 0.7, 4.0]], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([[1.0, -2.0, 0.5, 3.0, -1.0]], dtype=torch.float64)
    q = fsq_quantize(y, 4, ste="sigmoid")
    (w * q).sum().backward()
    s = torch.sigmoid(y.detach())
    torch.testing.assert_close(y.grad, w * 4 * s * (1 - s))
    # same forward values as the paper's identity STE
    torch.testing.assert_close(q.detach(), fsq_quantize(y.detach(), 4))
    with pytest.raises(QACError, match="straight-through"):
        fsq_quantize(y, 4, ste="tanh")
