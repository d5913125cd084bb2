"""qac.safeio: damaged files become one QACError naming the file; outputs are proven writable up front."""

from __future__ import annotations

import pickle
import shutil

import pytest
import torch
from safetensors.torch import save_file

import qac.safeio as safeio
from qac.errors import QACError


def test_read_json_names_the_file(tmp_path):
    good = tmp_path / "a.json"
    good.write_text('{"x": 1}')
    assert safeio.read_json(good) == {"x": 1}
    for name, data in [("bad.json", b"{x"), ("bin.json", b"\xff\xfe\x00"), ("empty.json", b"")]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(QACError, match=f"{name} is damaged or not JSON"):
            safeio.read_json(tmp_path / name)
    with pytest.raises(QACError, match="missing.json is missing"):
        safeio.read_json(tmp_path / "missing.json")


def test_read_safetensors_round_trip_and_damage(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.arange(4.0)}, str(path), metadata={"snapshot": "abc"})
    tensors, meta = safeio.read_safetensors(path)
    assert torch.equal(tensors["a"], torch.arange(4.0)) and meta == {"snapshot": "abc"}
    raw = path.read_bytes()
    for data in (raw[: len(raw) // 2], b"", b"\x00" * 7, pickle.dumps({"a": 1})):
        path.write_bytes(data)
        with pytest.raises(QACError, match="w.safetensors is damaged or not a safetensors file"):
            safeio.load_safetensors(path)


def test_load_plain_torch_refuses_code_and_garbage(tmp_path):
    ok = tmp_path / "ok.pt"
    torch.save({"step": 3, "t": torch.ones(2)}, ok)
    assert safeio.load_plain_torch(ok)["step"] == 3

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(QACError, match="evil.pt holds objects other than plain tensors"):
        safeio.load_plain_torch(tmp_path / "evil.pt")
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(QACError, match="junk.pt is damaged"):
        safeio.load_plain_torch(tmp_path / "junk.pt")


def test_check_writable_accepts_new_nested_folders_and_leaves_nothing(tmp_path):
    target = tmp_path / "a" / "b" / "c"
    assert safeio.check_writable(target) == target
    assert list(tmp_path.iterdir()) == []  # no probe file, no folder left behind


@pytest.mark.parametrize("make,is_dir,needle", [
    (lambda t: (t / "f").write_text("x") and t / "f" / "out", True, "is a file, not a folder"),
    (lambda t: (t / "f").write_text("x") and t / "f", True, "is a file, not a folder"),
    (lambda t: t, False, "is a folder"),
    (lambda t: __import__("pathlib").Path("/proc/qac-nope"), True, "cannot write --out /proc/qac-nope"),
])
def test_check_writable_refuses(tmp_path, make, is_dir, needle):
    with pytest.raises(QACError, match=needle):
        safeio.check_writable(make(tmp_path), is_dir=is_dir)


def test_check_writable_refuses_a_full_disk(tmp_path, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(safeio.shutil, "disk_usage", lambda p: type(real(p))(100, 99, 2**10))
    with pytest.raises(QACError, match="only 0.0 MiB free"):
        safeio.check_writable(tmp_path / "x")


def test_check_memory_compares_with_available(monkeypatch):
    monkeypatch.setattr(safeio, "available_memory", lambda: 2**30)
    safeio.check_memory(2**29, "a job", "lower it")
    with pytest.raises(QACError, match="a job needs at least 2.0 GiB of memory, only 1.0 GiB is available; lower it"):
        safeio.check_memory(2**31, "a job", "lower it")


def test_available_memory_is_positive():
    assert safeio.available_memory() > 0
