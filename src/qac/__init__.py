"""qac: few-step diffusion generation with Quantized Adaptive Conditions.

The package follows the pipeline: ``data`` -> ``nn`` (backbones) -> ``diffusion`` (preconditioning
and losses) -> ``conditions`` (the QAC encoder, quantizer and code weights) -> ``train`` ->
``sampling`` -> ``metrics``; ``cli`` is a thin click layer on top.
"""

from qac.errors import QACError

__version__ = "0.1.0"
__all__ = ["QACError", "__version__"]
