"""RunLock: one writer per run folder, released however the holder ends, no empty folder left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from qac.errors import QACError
from qac.train.lock import LOCK_NAME, RunLock


def test_second_writer_is_refused_with_the_holder_named(tmp_path):
    run = tmp_path / "run"
    with RunLock(run, "train"):
        (run / "config.json").write_text("{}")
        with pytest.raises(QACError, match=f"in use by another qac process \\(pid {os.getpid()} train\\)"):
            RunLock(run, "collect").acquire()
    with RunLock(run, "collect"):  # released on exit
        pass
    assert (run / "config.json").exists()


def test_a_folder_created_only_for_the_lock_is_removed_again(tmp_path):
    with RunLock(tmp_path / "new", "train"):
        assert (tmp_path / "new" / LOCK_NAME).exists()
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    with RunLock(tmp_path / "old", "train"):
        pass
    assert (tmp_path / "old").is_dir()  # existed before: kept


def test_lock_held_by_another_process_and_freed_when_it_is_killed(tmp_path):
    code = textwrap.dedent(f"""
        import sys, time
        from qac.train.lock import RunLock
        lock = RunLock({str(tmp_path)!r}, "train").acquire()
        print("locked", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(QACError, match=f"pid {proc.pid} train"):
            RunLock(tmp_path, "train").acquire()
    finally:
        proc.kill()
        proc.wait()
    RunLock(tmp_path, "train").acquire().release()  # kill -9 released it
