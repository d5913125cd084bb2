"""The QAC part (docs/design.md §3): FSQ quantizer, condition encoder E_phi and the code sampling weights.

Typical training step (paper Algorithm 1)::

    y = encoder(x0)                                # [B, d] logits
    y_q = fsq_quantize(y, L)                       # integer codes, straight-through gradient
    x0_hat = denoiser(x0 + sigma * n, sigma, code_to_input(y_q, L))
    weights.update(codes_to_index(y_q, L), decay)  # online sampling weights
"""

from qac.conditions.encoder import ENCODERS, MLPEncoder, UNetEncoder, build_encoder, encoder_channels
from qac.conditions.fsq import (
    MAX_CODEBOOK,
    code_to_input,
    codebook_size,
    codes_to_index,
    fsq_quantize,
    index_to_codes,
    level_list,
)
from qac.conditions.weights import CODE_STREAM, MAX_DENSE_CODEBOOK, CodeWeights

__all__ = [
    "CODE_STREAM",
    "ENCODERS",
    "MAX_CODEBOOK",
    "MAX_DENSE_CODEBOOK",
    "CodeWeights",
    "MLPEncoder",
    "UNetEncoder",
    "build_encoder",
    "code_to_input",
    "codebook_size",
    "codes_to_index",
    "encoder_channels",
    "fsq_quantize",
    "index_to_codes",
    "level_list",
]
