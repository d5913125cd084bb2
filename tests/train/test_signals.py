"""SIGTERM/SIGINT: checkpoint at the next step boundary and exit 143/130; a second signal ends at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qac.train.signals import GracefulStop, exit_code


def test_first_signal_is_recorded_and_arms_the_default_action():
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN under nohup
    stop = GracefulStop(enabled=True)
    try:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert stop.requested and stop.signum == signal.SIGTERM
        # a second SIGINT/SIGTERM now takes the operating system's default: the process ends at once
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) == signal.SIG_DFL
    finally:
        stop.restore()
    assert signal.getsignal(signal.SIGINT) == before
    assert exit_code(signal.SIGINT) == 130 and exit_code(signal.SIGTERM) == 143


def _start(out: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[2] / "src"))
    cmd = [sys.executable, "-m", "qac", "train", "--data", "toy:moons:500", "--arch", "mlp", "--code-dim", "3",
           "--out", str(out), "--steps", "1000000", "--batch", "16", "--log-every", "1", "--snapshot-every",
           "1000000", "--grid-every", "1000000", "--device", "cpu", "--no-progress"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_steps(proc: subprocess.Popen, out: Path, n: int = 3, timeout: float = 120.0) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        stats = out / "stats.jsonl"
        if stats.exists() and len(stats.read_text().splitlines()) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    proc.kill()
    pytest.fail("training did not start")


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_stop_signal_checkpoints_and_exits_non_zero(tmp_path, sig, code):
    out = tmp_path / "run"
    proc = _start(out)
    _wait_for_steps(proc, out)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert f"stopped by {signal.Signals(sig).name}" in err
    meta = json.loads((out / "checkpoint" / "meta.json").read_text())
    logged = [json.loads(line)["step"] for line in (out / "stats.jsonl").read_text().splitlines()]
    assert meta["step"] == logged[-1] >= 3


def test_second_signal_ends_a_long_step_at_once():
    """After the first signal the process is 'inside a long step' (a 60 s sleep); the second must end it."""
    code = ("import os, signal, sys, time\n"
            "from qac.train.signals import GracefulStop\n"
            "stop = GracefulStop(enabled=True)\n"
            "os.kill(os.getpid(), signal.SIGTERM)\n"
            "time.sleep(0.05)\n"
            "print('first', stop.requested, flush=True)\n"
            "time.sleep(60)\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2] / "src"))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "first True"
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGTERM and time.time() - t0 < 10
