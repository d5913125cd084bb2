"""Shared test settings and fixtures: small, deterministic, CPU."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


class _MeanStdDetector(torch.nn.Module):
    """A TorchScript-able stand-in for Inception: per-channel mean and std of uint8 images."""

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = img.to(torch.float32) / 255.0
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)


@pytest.fixture(scope="session")
def save_tiny_detector():
    """``save_tiny_detector(path) -> path``: write the mean/std detector as a TorchScript file."""

    def save(path: Path) -> Path:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.script(_MeanStdDetector()).save(str(path))
        return path

    return save


@pytest.fixture(scope="session")
def train_runs(tmp_path_factory):
    """``train_runs(label, {name: train args})`` -> ``{name: run folder}``: tiny CPU runs made with ``qac train``
    (in-process, no progress bar, no sample grids); each must exit 0."""
    from click.testing import CliRunner

    from qac.cli import main

    def make(label: str, specs: dict[str, tuple]) -> dict[str, Path]:
        root = tmp_path_factory.mktemp(label)
        out = {}
        for name, args in specs.items():
            argv = ["train", *args, "--out", root / name, "--grid-every", "1000", "--device", "cpu", "--no-progress"]
            res = CliRunner().invoke(main, [str(a) for a in argv], catch_exceptions=False)
            assert res.exit_code == 0, res.output
            out[name] = root / name
        return out

    return make
