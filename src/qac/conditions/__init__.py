"""The QAC part (SPEC §3): FSQ quantizer, condition encoder E_phi and the code sampling weights."""

from qac.conditions.fsq import (
    MAX_CODEBOOK,
    code_to_input,
    codebook_size,
    codes_to_index,
    fsq_quantize,
    index_to_codes,
    level_list,
)

__all__ = [
    "MAX_CODEBOOK",
    "code_to_input",
    "codebook_size",
    "codes_to_index",
    "fsq_quantize",
    "index_to_codes",
    "level_list",
]
