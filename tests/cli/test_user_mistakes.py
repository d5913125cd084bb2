"""Every user mistake: exit code 2, exactly one ``error:`` line, no traceback, and nothing existing changed.

One table: each row prepares a damaged or unusual situation in a copy of a small trained run (or none), runs
one command, and checks the message. Before and after, every file under the test folder is fingerprinted
(path and bytes); the two fingerprints must be equal. ``.lock`` files are left out: taking the run-folder
lock rewrites the holder's pid, which is bookkeeping, not data.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

import qac.safeio
from qac.cli import main


def _run(*args: Any):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "toy"
    res = _run("train", "--data", "toy:8gaussians:500", "--out", out, "--arch", "mlp", "--code-dim", "3",
               "--steps", "4", "--batch", "16", "--snapshot-every", "2", "--grid-every", "1000", "--device", "cpu",
               "--no-progress")
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def digit_run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("digits")
    out = base / "run"
    res = _run("train", "--data", "digits", "--out", out, "--channels", "8", "--code-dim", "3", "--steps", "2",
               "--batch", "16", "--grid-every", "1000", "--device", "cpu", "--no-progress")
    assert res.exit_code == 0, res.output
    res = _run("fid", "ref", "--data", "digits", "--proxy", "pixel_fd", "--max-items", "64", "--out",
               base / "ref.npz", "--no-progress")
    assert res.exit_code == 0, res.output
    return out


@dataclass
class Ctx:
    run: Path      # a private copy of the toy run
    digits: Path   # a private copy of the digits run (ref.npz next to it)
    tmp: Path
    monkeypatch: pytest.MonkeyPatch


# --- situations -------------------------------------------------------------------------------------------------

def _rewrite(path: Path, fn) -> None:
    """Rewrite a safetensors file through ``fn(tensors)``, keeping its header metadata (the snapshot id)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as fh:
        tensors, meta = {k: fh.get_tensor(k) for k in fh.keys()}, fh.metadata()
    save_file(fn(tensors), str(path), metadata=meta)


def truncate_model(c: Ctx) -> None:
    p = c.run / "checkpoint" / "model.safetensors"
    p.write_bytes(p.read_bytes()[:100])


def zero_byte_ema(c: Ctx) -> None:
    (c.run / "checkpoint" / "ema.safetensors").write_bytes(b"")


def garbage_ema(c: Ctx) -> None:
    (c.run / "checkpoint" / "ema.safetensors").write_bytes(bytes(range(256)) * 20)


def pickle_as_safetensors(c: Ctx) -> None:
    (c.run / "checkpoint" / "ema.safetensors").write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/qac-pwned",))


def malicious_resume(c: Ctx) -> None:
    (c.run / "checkpoint" / "resume.pt").write_bytes(pickle.dumps({"step": 4, "optimizer": _Evil()}))


def config_not_json(c: Ctx) -> None:
    (c.run / "config.json").write_bytes(b"\xff\xfe not json")


def meta_not_json(c: Ctx) -> None:
    (c.run / "checkpoint" / "meta.json").write_text("{step: 4")


def other_architecture(c: Ctx) -> None:
    cfg = json.loads((c.run / "config.json").read_text())
    cfg["model"]["code_dim"] = 5
    (c.run / "config.json").write_text(json.dumps(cfg))


def no_codes(c: Ctx) -> None:
    (c.run / "checkpoint" / "codes.safetensors").unlink()


def nan_weights(c: Ctx) -> None:
    for run in (c.run, c.digits):
        _rewrite(run / "checkpoint" / "ema.safetensors", lambda t: {k: torch.full_like(v, float("nan"))
                                                                    if v.is_floating_point() else v
                                                                    for k, v in t.items()})


def only_old_checkpoint(c: Ctx) -> None:
    os.replace(c.run / "checkpoint", c.run / "checkpoint.old")  # what a kill during the swap leaves


def foreign_folder(c: Ctx) -> None:
    (c.tmp / "notes").mkdir()
    (c.tmp / "notes" / "config.json").write_text('{"theirs": true}')


def a_regular_file(c: Ctx) -> None:
    (c.tmp / "file.txt").write_text("not a folder")


def read_only_fs(c: Ctx) -> None:
    (c.tmp / "ro").mkdir()
    real = qac.safeio.tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):  # noqa: A002 - tempfile's own name
        if dir is not None and Path(dir).resolve().is_relative_to((c.tmp / "ro").resolve()):
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*args, dir=dir, **kwargs)

    c.monkeypatch.setattr(qac.safeio.tempfile, "mkstemp", mkstemp)


def full_disk(c: Ctx) -> None:
    (c.tmp / "full").mkdir()
    real = shutil.disk_usage

    def usage(path):
        u = real(path)
        if Path(path).resolve().is_relative_to((c.tmp / "full").resolve()):
            return type(u)(u.total, u.total - 2**20, 2**20)
        return u

    c.monkeypatch.setattr(qac.safeio.shutil, "disk_usage", usage)


def one_gib_of_memory(c: Ctx) -> None:
    c.monkeypatch.setattr(qac.safeio, "available_memory", lambda: 2**30)


def locked(c: Ctx) -> None:
    from qac.train.lock import RunLock

    lock = RunLock(c.run, "train").acquire()
    c.monkeypatch.setattr(c, "cleanup", lock.release, raising=False)


def sampling_would_run(c: Ctx) -> None:
    import qac.eval.evaluate

    def fail(*args, **kwargs):
        raise AssertionError("sampling started before the --json path was checked")

    c.monkeypatch.setattr(qac.eval.evaluate, "fid_of_run", fail)
    a_regular_file(c)


def nothing(c: Ctx) -> None:
    pass


def _small_run(c: Ctx, cond: str) -> None:
    res = _run(*NEW[:-1], "--cond", cond, "--formulation", "rf", "--code-dim", "2", "--steps", "2",
               "--grid-every", "1000", "--no-progress", "--out", c.tmp / cond)
    assert res.exit_code == 0, res.output


def rne_run(c: Ctx) -> None:
    _small_run(c, "rne")


def vae_run(c: Ctx) -> None:
    _small_run(c, "vae")


TRAIN = ("--steps", "6", "--batch", "16", "--device", "cpu", "--no-progress")
NEW = ("train", "--data", "toy:moons:200", "--arch", "mlp", *TRAIN)

# id, situation, command line ({run}, {digits}, {tmp}, {ref} are filled in), text the error line must contain
CASES: list[tuple[str, Any, tuple[str, ...], str]] = [
    # damaged or foreign files -> one line naming the file
    ("truncated-safetensors", truncate_model, ("sample", "--run", "{run}"), "model.safetensors is damaged"),
    ("zero-byte-safetensors", zero_byte_ema, ("sample", "--run", "{run}"), "ema.safetensors is damaged"),
    ("garbage-safetensors", garbage_ema, ("info", "--run", "{run}"), "ema.safetensors is damaged"),
    ("pickle-as-safetensors", pickle_as_safetensors, ("collect", "--run", "{run}", "--no-progress"),
     "ema.safetensors is damaged"),
    ("malicious-resume-pt", malicious_resume, ("train", "--out", "{run}", "--resume", *TRAIN),
     "resume.pt holds objects other than plain tensors"),
    ("config-not-json", config_not_json, ("sample", "--run", "{run}"), "config.json is damaged or not JSON"),
    ("meta-not-json", meta_not_json, ("info", "--run", "{run}"), "meta.json is damaged or not JSON"),
    ("other-arch-sample", other_architecture, ("sample", "--run", "{run}"), "do not fit the model"),
    ("other-arch-info", other_architecture, ("info", "--run", "{run}"), "do not fit the model"),
    ("other-arch-collect", other_architecture, ("collect", "--run", "{run}", "--no-progress"), "do not fit the model"),
    ("other-arch-resume", other_architecture, ("train", "--out", "{run}", "--resume", *TRAIN), "do not fit the model"),
    ("missing-codes", no_codes, ("sample", "--run", "{run}"), "codes.safetensors are missing"),
    # unwritable output -> refused before any long work
    ("train-out-under-file", a_regular_file, (*NEW, "--out", "{tmp}/file.txt/run"), "file.txt is a file"),
    ("sample-out-under-file", a_regular_file, ("sample", "--run", "{run}", "--out", "{tmp}/file.txt/s"),
     "file.txt is a file"),
    ("fid-ref-out-under-file", a_regular_file, ("fid", "ref", "--data", "digits", "--proxy", "pixel_fd",
                                                "--out", "{tmp}/file.txt/ref.npz"), "file.txt is a file"),
    ("demo-out-under-file", a_regular_file, ("demo", "--out", "{tmp}/file.txt/demo", "--steps", "1"),
     "file.txt is a file"),
    ("bench-out-under-file", a_regular_file, ("bench-solvers", "--nfe", "4", "--out", "{tmp}/file.txt/b"),
     "file.txt is a file"),
    ("train-out-in-proc", nothing, (*NEW, "--out", "/proc/qac-test-out"), "cannot write --out /proc/qac-test-out"),
    ("sample-out-in-proc", nothing, ("sample", "--run", "{run}", "--out", "/proc/qac-test-out"),
     "cannot write --out /proc/qac-test-out"),
    ("train-read-only-fs", read_only_fs, (*NEW, "--out", "{tmp}/ro/run"), "read-only file system"),
    ("sample-read-only-fs", read_only_fs, ("sample", "--run", "{run}", "--out", "{tmp}/ro/s"),
     "read-only file system"),
    ("train-full-disk", full_disk, (*NEW, "--out", "{tmp}/full/run"), "MiB free"),
    ("sample-full-disk", full_disk, ("sample", "--run", "{run}", "--out", "{tmp}/full/s"), "MiB free"),
    ("fid-json-bad-path", sampling_would_run, ("fid", "calc", "--run", "{digits}", "--ref", "{ref}", "--proxy",
                                               "pixel_fd", "--nfe", "2", "--solver", "euler", "--json",
                                               "{tmp}/file.txt/r.json"), "cannot write --json"),
    ("fid-json-into-folder", sampling_would_run, ("fid", "calc", "--run", "{digits}", "--ref", "{ref}", "--proxy",
                                                  "pixel_fd", "--nfe", "2", "--solver", "euler", "--json", "{tmp}"),
     "is a directory"),
    # ranges and sizes
    ("seed-negative", nothing, (*NEW, "--out", "{tmp}/x", "--seed", "-1"), "--seed"),
    ("seed-2^63", nothing, ("sample", "--run", "{run}", "--seeds", str(2**63)), "above the maximum"),
    ("seed-zero-step", nothing, ("sample", "--run", "{run}", "--seeds", "0-10:0"), "not a range"),
    ("sample-batch-0", nothing, ("sample", "--run", "{run}", "--batch", "0"), "--batch"),
    ("collect-batch-0", nothing, ("collect", "--run", "{run}", "--batch", "0"), "--batch"),
    ("opt-not-a-number", nothing, ("sample", "--run", "{run}", "--solver", "edm_sde", "--opt", "S_churn=lots"),
     "S_churn='lots' of 'edm_sde' must be a number"),
    ("opt-out-of-range", nothing, ("sample", "--run", "{run}", "--solver", "ipndm_v", "--opt", "coarse_h=-1"),
     "coarse_h must be > 0"),
    ("opt-order-too-high", nothing, ("sample", "--run", "{run}", "--solver", "unipc", "--opt", "max_order=9"),
     "max_order 1..3"),
    ("device-mps", nothing, ("sample", "--run", "{run}", "--device", "mps"), "MPS"),
    ("dropout-1.5", nothing, ("train", "--out", "{tmp}/x", "--dropout", "1.5", *TRAIN), "dropout must be in [0, 1)"),
    ("channels-0", nothing, ("train", "--out", "{tmp}/x", "--channels", "0", *TRAIN), "--channels"),
    ("arch-nosuch", nothing, (*NEW, "--out", "{tmp}/x", "--arch", "nosuch"), "unknown arch 'nosuch'"),
    ("info-levels-1", nothing, ("info", "--arch", "digits", "--levels", "1"), "levels L must be >= 2"),
    ("info-code-dim-60", nothing, ("info", "--arch", "digits", "--code-dim", "60"), "too large"),
    ("seeds-200M", nothing, ("sample", "--run", "{run}", "--seeds", "0-200000000"), "entries; at most"),
    ("sample-huge-batch", one_gib_of_memory, ("sample", "--run", "{digits}", "--seeds", "0-999999", "--batch",
                                              "100000000", "--steps", "1"), "lower --batch"),
    ("train-huge-batch", one_gib_of_memory, (*NEW, "--out", "{tmp}/x", "--batch", "100000000"), "lower --batch"),
    ("train-resolution-100000", nothing, ("train", "--out", "{tmp}/x", "--resolution", "100000", *TRAIN),
     "smaller --resolution"),
    # conditions without QAC code weights (rne, vae) and the KL weight
    ("rne-beta-negative", nothing, (*NEW, "--out", "{tmp}/x", "--cond", "rne", "--beta", "-1"),
     "--beta (KL weight) must be >= 0"),
    ("qac-beta", nothing, (*NEW, "--out", "{tmp}/x", "--beta", "5"), "--cond qac has no KL term"),
    ("vae-code", vae_run, ("sample", "--run", "{tmp}/vae", "--code", "1"), "--code needs QAC code weights"),
    ("rne-code", rne_run, ("sample", "--run", "{tmp}/rne", "--code", "1"), "--cond rne"),
    ("vae-code-from", vae_run, ("sample", "--run", "{tmp}/vae", "--code-from", "{tmp}/vae/config.json"),
     "--code-from needs QAC code weights"),
    ("rne-codes-offline", rne_run, ("sample", "--run", "{tmp}/rne", "--codes", "offline"),
     "--codes offline needs QAC code weights"),
    ("vae-codes-uniform", vae_run, ("sample", "--run", "{tmp}/vae", "--codes", "uniform"),
     "--codes uniform needs QAC code weights"),
    ("rne-analyze-codes-offline", rne_run, ("analyze", "--run", "{tmp}/rne", "--codes", "offline"),
     "--codes offline needs QAC code weights"),
    ("rne-collect", rne_run, ("collect", "--run", "{tmp}/rne", "--no-progress"), "--cond rne, which has no code"),
    ("vae-collect", vae_run, ("collect", "--run", "{tmp}/vae", "--no-progress"), "--cond vae, which has no code"),
    ("rne-resume-other-beta", rne_run, ("train", "--out", "{tmp}/rne", "--resume", "--beta", "3", *TRAIN),
     "--beta 3.0 differs"),
    # a diverged checkpoint never passes for a result
    ("sample-nan-weights", nan_weights, ("sample", "--run", "{run}", "--steps", "2"), "NaN/Inf"),
    ("fid-nan-weights", nan_weights, ("fid", "calc", "--run", "{digits}", "--ref", "{ref}", "--proxy", "pixel_fd",
                                      "--nfe", "2", "--solver", "euler", "--num", "8", "--no-progress"), "NaN/Inf"),
    # honest resume
    ("resume-other-data", nothing, ("train", "--out", "{run}", "--resume", "--data", "toy:moons", *TRAIN),
     "--data 'toy:moons' differs"),
    ("resume-other-cond", nothing, ("train", "--out", "{run}", "--resume", "--cond", "none", *TRAIN),
     "--cond 'none' differs"),
    ("resume-other-lr", nothing, ("train", "--out", "{run}", "--resume", "--lr", "0.01", *TRAIN),
     "--override lr"),
    ("resume-steps-below", nothing, ("train", "--out", "{run}", "--resume", "--steps", "2", "--no-progress"),
     "below the step 4"),
    ("override-without-resume", nothing, (*NEW, "--out", "{tmp}/x", "--override", "lr"), "only applies with --resume"),
    # run folders are never clobbered; one writer at a time
    ("train-over-cut-swap", only_old_checkpoint, (*NEW, "--out", "{run}"), "already holds a run"),
    ("train-into-foreign-folder", foreign_folder, (*NEW, "--out", "{tmp}/notes"), "is not empty"),
    ("resume-while-locked", locked, ("train", "--out", "{run}", "--resume", "--steps", "8", "--no-progress"),
     "in use by another qac process"),
    ("collect-while-locked", locked, ("collect", "--run", "{run}", "--no-progress"), "in use by another qac process"),
    # sampling options that do not fit (one definition for sample, fid calc, sweep, analyze)
    ("flow-on-edm-run", nothing, ("sample", "--run", "{run}", "--schedule", "flow"), "is for rf models"),
    ("flow-with-dpmpp", nothing, ("sample", "--run", "{run}", "--schedule", "flow", "--solver", "dpmpp_2m"),
     "runs solvers euler, heun, rk45"),
    ("rk45-with-nfe", nothing, ("sample", "--run", "{run}", "--solver", "rk45", "--nfe", "7"), "not --nfe"),
    ("unknown-schedule", nothing, ("sample", "--run", "{run}", "--schedule", "karras"),
     "unknown schedule 'karras'; choose from auto, flow"),
    ("fid-flow-on-edm", nothing, ("fid", "calc", "--run", "{digits}", "--ref", "{ref}", "--proxy", "pixel_fd",
                                  "--nfe", "3", "--schedule", "flow", "--no-progress"), "is for rf models"),
    ("sweep-flow-on-edm", nothing, ("sweep", "--run", "{run}", "--solver", "euler", "--nfe", "2", "--schedule",
                                    "flow", "--out", "{tmp}/sw", "--no-progress"), "is for rf models"),
    ("sweep-unknown-schedule", nothing, ("sweep", "--run", "{run}", "--schedule", "nope", "--out", "{tmp}/sw"),
     "unknown schedule"),
    ("analyze-rk45", nothing, ("analyze", "--run", "{run}", "--solver", "rk45", "--no-progress"),
     "curvature needs a fixed grid"),
    # click's own usage errors
    ("unknown-option", nothing, ("sample", "--run", "{run}", "--bogus"), "--bogus"),
]


def _fingerprint(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.name == ".lock":
            continue
        out[str(p.relative_to(root))] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.mark.parametrize("case_id,situation,args,needle", CASES, ids=[c[0] for c in CASES])
def test_user_mistake_is_one_line_exit_2_and_changes_nothing(toy_run, digit_run, tmp_path, monkeypatch,
                                                              case_id, situation, args, needle):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(toy_run, work / "run")
    shutil.copytree(digit_run.parent, work / "digits")
    ctx = Ctx(run=work / "run", digits=work / "digits" / "run", tmp=work, monkeypatch=monkeypatch)
    situation(ctx)
    argv = [a.format(run=ctx.run, digits=ctx.digits, tmp=work, ref=work / "digits" / "ref.npz") for a in args]
    before = _fingerprint(work)
    try:
        res = CliRunner().invoke(main, argv)
    finally:
        getattr(ctx, "cleanup", lambda: None)()
    assert res.exit_code == 2, (res.output, res.exception)
    assert "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.output
    assert needle in errors[0], errors[0]
    assert _fingerprint(work) == before, "an existing file changed"
    assert not Path("/tmp/qac-pwned").exists()


def test_resume_continues_the_saved_config_even_from_a_cut_swap(toy_run, tmp_path):
    """The positive side: --resume needs only --out and --steps; a folder holding only checkpoint.old resumes."""
    run = tmp_path / "run"
    shutil.copytree(toy_run, run)
    os.replace(run / "checkpoint", run / "checkpoint.old")
    saved = json.loads((run / "config.json").read_text())
    res = _run("train", "--out", run, "--resume", "--steps", "6", "--device", "cpu", "--no-progress")
    assert res.exit_code == 0, res.output
    assert json.loads((run / "checkpoint" / "meta.json").read_text())["step"] == 6
    now = json.loads((run / "config.json").read_text())
    assert now == {**saved, "steps": 6, "device": "cpu"}
    res = _run("train", "--out", run, "--resume", "--steps", "6", "--no-progress")
    assert res.exit_code == 0 and "nothing to train" in res.output
