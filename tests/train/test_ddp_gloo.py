"""Two processes under torchrun (gloo on CPU): code counts are all-reduced and rank 0 writes the run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path):
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed not available")
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "qac", "train", "--data", "toy:moons:512", "--arch", "mlp",
           "--code-dim", "4", "--steps", "4", "--batch", "32", "--device", "cpu", "--out", str(out),
           "--grid-every", "1000", "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    w = load_file(str(out / "checkpoint" / "codes.safetensors"))["weights"]
    # each rank encodes 16 images; all-reduced counts make sum(w) the global batch of 32
    assert float(w.sum()) == pytest.approx(32.0)
    assert len((out / "stats.jsonl").read_text().splitlines()) >= 1
    assert res.stdout.count("trained 4 steps") == 1, res.stdout  # one summary per job (rank 0), not per process
