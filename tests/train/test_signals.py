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


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_stop_signal_checkpoints_and_exits_non_zero(tmp_path, monkeypatch, sig, code):
    """``qac train`` sent a signal during its fifth step: checkpoint at step 5, exit 128 + N, resumable."""
    from click.testing import CliRunner

    import qac.train.loop as loop
    from qac.cli import main

    real_step = loop._train_step

    def step_then_signal(*args, **kwargs):
        out = real_step(*args, **kwargs)
        if args[3] == 4:
            os.kill(os.getpid(), sig)
        return out

    monkeypatch.setattr(loop, "_train_step", step_then_signal)
    out = tmp_path / "run"
    args = ["train", "--data", "toy:moons:500", "--arch", "mlp", "--code-dim", "3", "--out", str(out), "--steps",
            "1000", "--batch", "16", "--log-every", "1", "--snapshot-every", "1000", "--grid-every", "1000",
            "--device", "cpu", "--no-progress"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == code, res.output
    assert f"stopped by {signal.Signals(sig).name} at step 5" in res.output
    assert json.loads((out / "checkpoint" / "meta.json").read_text())["step"] == 5
    monkeypatch.setattr(loop, "_train_step", real_step)
    res = CliRunner().invoke(main, ["train", "--out", str(out), "--resume", "--steps", "6", "--no-progress"])
    assert res.exit_code == 0 and "trained 6 steps" in res.output, res.output


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
