"""Two gloo processes under torchrun on CPU against one process: training resume is bitwise, samples are
bitwise those of one process, FID statistics and Fréchet distances agree to 1e-9, collect counts are exact.

All 2-process commands run in one torchrun launch (``torchrun_cli.py``) to keep the test short.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from qac.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]
HERE = Path(__file__).parent
TRAIN = "--data digits --channels 8 --code-dim 3 --batch 16 --snapshot-every 2 --grid-every 1000 --augment 0.3 " \
        "--batch-gpu 4 --device cpu --no-progress"
SAMPLE = "--seeds 0-6 --solver euler --steps 2 --device cpu"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one(*args) -> None:
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed not available")
    d = tmp_path_factory.mktemp("torchrun")
    run, ref = d / "two_fresh", d / "ref.npz"
    # one-process references (the run itself is trained by the 2-process job below)
    _one("fid", "ref", "--data", "digits", "--proxy", "pixel_fd", "--out", ref, "--no-progress")
    lines = [
        f"train {TRAIN} --steps 6 --out {run}",
        f"train {TRAIN} --steps 4 --out {d / 'two_resumed'}",
        f"train {TRAIN} --steps 6 --out {d / 'two_resumed'} --resume",
        f"sample --run {run} {SAMPLE} --out {d / 'two_sample'}",
        f"fid ref --data digits --proxy pixel_fd --out {d / 'two_ref.npz'} --batch 500 --no-progress",
        f"fid calc --run {run} --ref {ref} --proxy pixel_fd --solver euler --nfe 2 --num 7 "
        f"--json {d / 'two_fid.json'} --device cpu --no-progress",
        f"sweep --run {run} --solver euler --nfe 1,2 --metric proxy_pixel_fd --ref {ref} --num 5 "
        f"--out {d / 'two_sweep'} --device cpu --no-progress",
        f"collect --run {run} --device cpu --no-progress",
    ]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", str(HERE / "torchrun_cli.py"), *lines]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return d


def test_two_process_resume_is_bitwise(dirs):
    for name in ("model", "ema", "codes"):
        a = load_file(str(dirs / "two_fresh" / "checkpoint" / f"{name}.safetensors"))
        b = load_file(str(dirs / "two_resumed" / "checkpoint" / f"{name}.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    w = load_file(str(dirs / "two_fresh" / "checkpoint" / "codes.safetensors"))["weights"]
    assert float(w.sum()) == pytest.approx(16.0)  # code counts all-reduced over the global batch


def test_two_process_samples_are_bitwise_those_of_one_process(dirs):
    # one process with the same batch split as the two ranks (seeds 0-3 | 4-6), so even BLAS sees the same batches
    _one("sample", "--run", dirs / "two_fresh", *SAMPLE.split(), "--batch", "4", "--out", dirs / "one_sample")
    a, b = np.load(dirs / "two_sample" / "samples.npz"), np.load(dirs / "one_sample" / "samples.npz")
    assert a["samples"].shape == (7, 8, 8, 1)
    for key in ("samples", "codes", "seeds", "nfe"):
        assert np.array_equal(a[key], b[key]), key


def test_two_process_reference_statistics_equal_one_process(dirs):
    _one("fid", "ref", "--data", "digits", "--proxy", "pixel_fd", "--out", dirs / "one_ref.npz", "--batch", "500",
         "--no-progress")
    a, b = np.load(dirs / "two_ref.npz"), np.load(dirs / "one_ref.npz")
    np.testing.assert_allclose(a["mu"], b["mu"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(a["sigma"], b["sigma"], rtol=0, atol=1e-12)
    assert json.loads(str(a["meta"]))["n"] == json.loads(str(b["meta"]))["n"] == 1797


def test_two_process_fid_equals_one_process(dirs):
    _one("fid", "calc", "--run", dirs / "two_fresh", "--ref", dirs / "ref.npz", "--proxy", "pixel_fd", "--solver",
         "euler", "--nfe", "2", "--num", "7", "--json", dirs / "one_fid.json", "--device", "cpu", "--no-progress")
    a = json.loads((dirs / "two_fid.json").read_text())
    b = json.loads((dirs / "one_fid.json").read_text())
    assert a["n"] == b["n"] == 7 and a["seeds"] == b["seeds"] == "0-6" and a["nfe"] == 2
    # the network's BLAS kernels depend on the batch shape (~1e-9 in the outputs), so the FD of a few hundred
    # agrees to 1e-9 relative, not absolute
    assert a["value"] == pytest.approx(b["value"], rel=1e-9, abs=1e-9) and a["value"] > 0


def test_two_process_sweep_equals_one_process(dirs):
    _one("sweep", "--run", dirs / "two_fresh", "--solver", "euler", "--nfe", "1,2", "--metric", "proxy_pixel_fd",
         "--ref", dirs / "ref.npz", "--num", "5", "--out", dirs / "one_sweep", "--device", "cpu", "--no-progress")
    a = json.loads((dirs / "two_sweep" / "sweep.json").read_text())["rows"]
    b = json.loads((dirs / "one_sweep" / "sweep.json").read_text())["rows"]
    assert [(r["nfe"], r["n"]) for r in a] == [(r["nfe"], r["n"]) for r in b] == [(1, 5), (2, 5)]
    for ra, rb in zip(a, b):
        assert ra["value"] == pytest.approx(rb["value"], rel=1e-9, abs=1e-9)


def test_two_process_collect_equals_one_process(dirs):
    two = load_file(str(dirs / "two_fresh" / "codes_offline.safetensors"))["weights"].clone()
    _one("collect", "--run", dirs / "two_fresh", "--device", "cpu", "--no-progress")
    one = load_file(str(dirs / "two_fresh" / "codes_offline.safetensors"))["weights"]
    assert torch.equal(two, one) and float(one.sum()) == 1797
