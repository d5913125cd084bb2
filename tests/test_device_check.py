"""benchmarks/device_check.py, the script a session lent a GPU runs, works end to end (here on the CPU)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_device_check_runs_every_stage_on_the_cpu(tmp_path):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "device_check.py"
    spec = importlib.util.spec_from_file_location("device_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(["--device", "cpu", "--steps", "2", "--quick", "--out", str(tmp_path)])
    assert set(rows) == {"env", "train_fp32", "resume", "sampling", "edit", "torchrun"}
    assert all(r["ok"] for r in rows.values()), {k: r.get("error") for k, r in rows.items()}
    assert rows["resume"]["max_weight_diff"] == 0.0  # bitwise on the CPU
    assert all(s["max_diff"] == 0.0 for s in rows["sampling"]["solvers"].values())  # cpu vs cpu
    assert json.loads((tmp_path / "device_check.json").read_text()).keys() == rows.keys()
    assert (tmp_path / "device_check.md").read_text().count("| True |") == 6
