"""One writer per run folder: an advisory lock file taken by ``train`` (new or resumed) and ``collect``.

``RUN/.lock`` holds the pid and purpose of the holder while an exclusive ``flock`` is held on it; the
operating system releases the lock when the process ends, however it ends (kill -9 included), so a stale
file never blocks anyone. A second writer gets one QACError line naming the holder instead of two
processes interleaving snapshots (and a ``config.json`` that names one seed while holding the other's
weights). On platforms without ``fcntl`` the lock is a no-op.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from qac.errors import QACError

try:  # pragma: no branch
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


class RunLock:
    """``with RunLock(run_dir, "train"):`` -- exclusive, non-blocking; QACError if another process holds it."""

    def __init__(self, run_dir: str | os.PathLike[str], purpose: str) -> None:
        self.run_dir = Path(run_dir)
        self.purpose = purpose
        self._fh = None
        self._created = False

    @property
    def path(self) -> Path:
        """The lock file inside the run folder."""
        return self.run_dir / LOCK_NAME

    def acquire(self) -> RunLock:
        """Take the exclusive lock (creating the run folder if needed) and write ``pid <pid> <purpose>`` into it.

        A :class:`QACError` naming the holder when another process has it; returns self (at once if already held).
        """
        if self._fh is not None:
            return self
        self._created = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.seek(0)
                holder = " ".join(fh.read().split()) or "unknown"
                fh.close()
                self._created = False
                raise QACError(f"{self.run_dir} is in use by another qac process ({holder}); wait for it to "
                               "finish or pick another folder") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} {self.purpose}\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        """Drop the lock; a run folder this lock created that holds only the lock file is removed. No-op if not held."""
        if self._fh is None:
            return
        if fcntl is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
        self._fh.close()
        self._fh = None
        if self._created and [p.name for p in self.run_dir.iterdir()] == [LOCK_NAME]:
            self.path.unlink()  # nothing was written: leave no empty folder behind
            self.run_dir.rmdir()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
