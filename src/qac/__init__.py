"""qac: few-step diffusion generation with Quantized Adaptive Conditions.

The package follows the pipeline, and imports flow one way along it: ``data`` -> ``nn`` (backbones) ->
``diffusion`` (preconditioning and losses) -> ``conditions`` (the QAC encoder, quantizer and code weights)
-> ``model`` (denoiser + encoder) -> ``sampling`` (schedules, solvers, ``generate``) -> ``train`` ->
``metrics`` -> ``eval`` / ``bench`` (drivers that run models) -> ``cli``.

The main entry points are offered here and imported on first use (``import qac`` stays light)::

    import qac
    qac.train(qac.TrainConfig(data="toy:moons", steps=200), "runs/moons")
    run = qac.load_run("runs/moons")
    out = qac.generate(run.model, range(64), code_weights=run.code_weights(), solver="euler", nfe=4)
"""

from __future__ import annotations

import importlib
from typing import Any

from qac.errors import QACError

__version__ = "0.1.0"

_LAZY = {
    "train": "qac.train",  # the package itself, callable as the training function
    "TrainConfig": "qac.train.config",
    "ModelConfig": "qac.model",
    "build_model": "qac.model",
    "load_run": "qac.train.run",
    "generate": "qac.sampling.generate",
    "sample": "qac.sampling.sample",
}
__all__ = ["QACError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        value = module if name == "train" else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'qac' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
