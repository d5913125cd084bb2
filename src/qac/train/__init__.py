"""Training: config, the Algorithm 1 loop, EMA, crash-safe checkpoints, DDP plumbing, run folders.

The package itself is callable as :func:`qac.train.loop.train`, so ``qac.train(cfg, out)`` works whether
``qac.train`` was reached as the package or as the function.
"""

import sys
import types

from qac.model import ModelConfig, QACModel, build_model
from qac.train.checkpoint import load_snapshot, save_checkpoint
from qac.train.config import TrainConfig, load_config
from qac.train.ema import ema_beta, update_ema
from qac.train.loop import TrainingDiverged, TrainSummary, train
from qac.train.run import LoadedRun, collect_run, load_run

__all__ = [
    "LoadedRun", "ModelConfig", "QACModel", "TrainConfig", "TrainSummary", "TrainingDiverged", "build_model",
    "collect_run", "ema_beta", "load_config", "load_run", "load_snapshot", "save_checkpoint", "train", "update_ema",
]


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
