"""Training: config, the Algorithm 1 loop, EMA, crash-safe checkpoints, DDP plumbing."""

from qac.train.checkpoint import load_snapshot, save_checkpoint
from qac.train.config import ModelConfig, TrainConfig, load_config
from qac.train.ema import ema_beta, update_ema
from qac.train.loop import TrainingDiverged, TrainSummary, train
from qac.train.model import QACModel, build_model

__all__ = [
    "ModelConfig", "QACModel", "TrainConfig", "TrainSummary", "TrainingDiverged", "build_model", "ema_beta",
    "load_config", "load_snapshot", "save_checkpoint", "train", "update_ema",
]
