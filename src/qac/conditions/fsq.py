"""QAC's finite scalar quantizer (paper §3.2, docs/design.md §3).

Per channel ``f(y) = floor(L * sigmoid(y))``, clamped to ``L - 1`` (in float32 the sigmoid rounds to
exactly 1.0 for ``y`` above ~17, which would give ``L``), with a straight-through estimator
(the paper's ``y_q = y + sg(f(y) - y)``, or one of the variants in :data:`STE_MODES`). The code space is
``C = {0..L-1}^d``, ``|C| = L^d``, and a code's index is the mixed-radix number
``sum_i y_q,i * prod_{j<i} L_j`` (the first channel is least significant; for equal levels
``sum_i y_q,i * L^i``).

``levels`` is an int ``L`` (the same for every channel) or a per-channel sequence ``(L_1, ..., L_d)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from qac.errors import QACError

__all__ = [
    "Levels",
    "MAX_CODEBOOK",
    "level_list",
    "codebook_size",
    "STE_MODES",
    "PAPER_STE",
    "DEFAULT_STE",
    "fsq_quantize",
    "codes_to_index",
    "index_to_codes",
    "code_to_input",
]

Levels = int | Sequence[int]

#: Largest codebook whose indices we handle (int64 with head-room); dense code weights have their own cap.
MAX_CODEBOOK = 2**62


def level_list(levels: Levels, dim: int) -> list[int]:
    """Per-channel levels as a list of ``dim`` ints (each >= 2); raises :class:`QACError` on a mismatch.

    >>> level_list(2, 3), level_list((3, 5), 2)
    ([2, 2, 2], [3, 5])
    """
    if isinstance(levels, int):
        out = [int(levels)] * int(dim)
    else:
        out = [int(v) for v in levels]
        if len(out) != dim:
            raise QACError(f"{len(out)} per-channel levels given for a code of dimension {dim}")
    if dim < 1:
        raise QACError(f"code dimension must be >= 1, got {dim}")
    if min(out) < 2:
        raise QACError(f"every quantization level count must be >= 2, got {out}")
    return out


def codebook_size(levels: Levels, dim: int) -> int:
    """``|C| = prod_i L_i`` (``L^d`` for equal levels); raises :class:`QACError` beyond 2^62.

    >>> codebook_size(2, 20)
    1048576
    """
    size = math.prod(level_list(levels, dim))
    if size > MAX_CODEBOOK:
        raise QACError(f"codebook of {size} codes is too large for int64 indices (max 2^62)")
    return size


def _levels_tensor(levels: Levels, dim: int, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(level_list(levels, dim), dtype=like.dtype, device=like.device)


#: Logit margin beyond the outermost bin edge used by the ``bounded`` and ``softclip`` gradients.
BOUND_MARGIN = 3.0


def _logit_bound(lv: torch.Tensor) -> torch.Tensor:
    """``c = ln(L - 1) + BOUND_MARGIN`` per channel: the outermost bin edge ``logit((L-1)/L) = ln(L-1)``
    plus a margin (at ``|y| = c`` the scaled sigmoid sits ``L sigmoid'`` ~ ``e^-3`` inside the edge bin)."""
    return torch.log(lv - 1) + BOUND_MARGIN


def ste_identity(y: torch.Tensor, lv: torch.Tensor) -> torch.Tensor:
    """The paper's straight-through estimator (§3.2, ``y_q = y + sg(f(y) - y)``): ``d y_q / d y = 1``.

    Nothing bounds the logits, so they drift far past the bin edges and the encoder uses few codes.
    """
    return y


def ste_sigmoid(y: torch.Tensor, lv: torch.Tensor) -> torch.Tensor:
    """Straight through the scaled sigmoid ``s = L sigmoid(y)``: ``d y_q / d y = L sigmoid(y) (1 - sigmoid(y))``.

    Bounded and vanishing for large ``|y|`` (FSQ-style); at most ``L / 4``, at ``y = 0``.
    """
    return lv * torch.sigmoid(y)


class _InwardOnly(torch.autograd.Function):
    """Identity forward; backward passes ``g`` where ``|y| <= c`` or where descent (``y -= lr g``) moves
    ``y`` back towards the interval (``y g > 0``), and zero elsewhere."""

    @staticmethod
    def forward(ctx, y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(y, c)
        return y.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        y, c = ctx.saved_tensors
        keep = (y.abs() <= c) | (y * grad > 0)
        return grad * keep.to(grad.dtype), None


def ste_bounded(y: torch.Tensor, lv: torch.Tensor) -> torch.Tensor:
    """Bounded identity: the paper's gradient (``d y_q / d y = 1``) while ``|y| <= c``, and beyond ``c`` only
    the inward part (a gradient whose descent step would push ``|y|`` further out is zeroed).

    ``c = ln(L - 1) + 3`` (:data:`BOUND_MARGIN`): the logits stay near the bins, so a channel can still change
    its level, while inside the gradient is as sharp as the paper's.
    """
    return _InwardOnly.apply(y, _logit_bound(lv).expand_as(y))


def ste_softclip(y: torch.Tensor, lv: torch.Tensor) -> torch.Tensor:
    """Identity through a soft logit clip ``c tanh(y / c)``: ``d y_q / d y = 1 - tanh^2(y / c)``.

    Equal to the paper's gradient near ``y = 0`` and fading smoothly beyond ``c = ln(L - 1) + 3``.
    """
    c = _logit_bound(lv)
    return c * torch.tanh(y / c)


#: Straight-through gradients by name: ``fn(y, L)`` returns a surrogate whose derivative is the backward pass
#: (its value is never used: the forward value is always the exact code).
STE_MODES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "identity": ste_identity,
    "sigmoid": ste_sigmoid,
    "bounded": ste_bounded,
    "softclip": ste_softclip,
}
#: The paper's form (reachable with ``--ste identity``).
PAPER_STE = "identity"
#: The default, chosen by measurement (``benchmarks/ste.py`` -> ``docs/results/ste.md``).
DEFAULT_STE = "sigmoid"


def fsq_quantize(y: torch.Tensor, levels: Levels, ste: str = DEFAULT_STE) -> torch.Tensor:
    """Quantize encoder logits ``y`` [B, d] to integer codes in ``{0..L-1}`` with a straight-through gradient.

    Forward value: exactly ``clamp(floor(L * sigmoid(y)), max=L-1)`` (``y``'s dtype, at least float32), for
    every mode. Backward: ``ste`` names an entry of :data:`STE_MODES` whose surrogate ``s(y)`` gives
    ``d y_q / d y`` (written as ``f(y) + (s - sg(s))`` so the forward value is exact even for huge ``|y|``):
    ``identity`` (the paper's), ``sigmoid``, ``bounded`` or ``softclip``.

    >>> fsq_quantize(torch.tensor([[-5.0, 0.1, 50.0]]), 2)
    tensor([[0., 1., 1.]])
    """
    if y.ndim < 1:
        raise ValueError("fsq_quantize expects y [..., d]")
    surrogate_fn = STE_MODES.get(ste)
    if surrogate_fn is None:
        raise QACError(f"unknown straight-through mode {ste!r}; choose one of {', '.join(STE_MODES)}")
    if y.dtype in (torch.float16, torch.bfloat16):
        y = y.float()  # quantize in float32 at least: half precision mis-bins near the edges
    lv = _levels_tensor(levels, y.shape[-1], y)
    f = torch.minimum(torch.floor(lv * torch.sigmoid(y.detach())), lv - 1)
    s = surrogate_fn(y, lv)
    return f + (s - s.detach())


def codes_to_index(y_q: torch.Tensor, levels: Levels) -> torch.Tensor:
    """Mixed-radix index ``sum_i y_q,i * prod_{j<i} L_j`` of integer codes ``y_q`` [B, d] -> int64 [B].

    >>> codes_to_index(torch.tensor([[1.0, 0.0, 1.0]]), 2)
    tensor([5])
    """
    d = y_q.shape[-1]
    lv = level_list(levels, d)
    codebook_size(lv, d)
    q = torch.round(y_q.detach()).to(torch.int64)
    lv_t = torch.tensor(lv, dtype=torch.int64, device=q.device)
    if bool(((q < 0) | (q >= lv_t)).any()):
        raise ValueError("codes_to_index: codes outside {0..L-1}")
    basis = torch.tensor([math.prod(lv[:i]) for i in range(d)], dtype=torch.int64, device=q.device)
    return (q * basis).sum(dim=-1)


def index_to_codes(index: torch.Tensor, levels: Levels, dim: int) -> torch.Tensor:
    """Inverse of :func:`codes_to_index`: int64 [B] -> float32 codes [B, dim] with entries in ``{0..L_i-1}``.

    >>> index_to_codes(torch.tensor([5]), 2, 3)
    tensor([[1., 0., 1.]])
    """
    lv = level_list(levels, dim)
    size = codebook_size(lv, dim)
    idx = torch.as_tensor(index, dtype=torch.int64)
    if bool(((idx < 0) | (idx >= size)).any()):
        raise QACError(f"code index out of range [0, {size})")
    basis = torch.tensor([math.prod(lv[:i]) for i in range(dim)], dtype=torch.int64, device=idx.device)
    lv_t = torch.tensor(lv, dtype=torch.int64, device=idx.device)
    return torch.remainder(torch.div(idx[..., None], basis, rounding_mode="floor"), lv_t).to(torch.float32)


def code_to_input(y_q: torch.Tensor, levels: Levels) -> torch.Tensor:
    """Rescale codes ``{0..L-1}`` linearly to ``[-1, 1]`` (``2 y_q / (L-1) - 1``) for the code-embedding MLP.

    This is what backbones expect as ``code``: the scale is then independent of L (L = 2 gives ±1). It is
    affine, so the straight-through gradient passes (times ``2 / (L-1)``).

    >>> code_to_input(torch.tensor([[0.0, 1.0, 2.0]]), 3)
    tensor([[-1.,  0.,  1.]])
    """
    lv = _levels_tensor(levels, y_q.shape[-1], y_q)
    return 2.0 * y_q / (lv - 1) - 1.0
