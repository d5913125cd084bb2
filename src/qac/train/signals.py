"""Stopping a training run on SIGINT (Ctrl-C) or SIGTERM (``timeout``, job schedulers).

First signal: the current step finishes, a checkpoint is written, and the run reports the signal so the
CLI exits with 128 + signal number (130 for SIGINT, 143 for SIGTERM) -- a scheduler must not mistake a
stopped run for a finished one. The handlers are then reset to the operating system's default, so a
second signal ends the process at once, even inside a long step (the previous snapshot stays intact:
snapshots are swapped in atomically). Installed only in the main thread of a single-process run; under
torchrun the launcher handles signals.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulStop:
    """Records the first stop signal; :attr:`requested` turns true, :attr:`signum` names it."""

    def __init__(self, enabled: bool) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}
        if enabled and threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)

    @property
    def requested(self) -> bool:
        """True once a stop signal has arrived."""
        return self.signum is not None

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        for sig in self._old:  # a second signal takes the default action: the process ends at once
            signal.signal(sig, signal.SIG_DFL)

    def restore(self) -> None:
        """Reinstall the signal handlers that were in place before this object took over."""
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old.clear()


def exit_code(signum: int) -> int:
    """The shell's exit status for a process stopped by ``signum`` (128 + N)."""
    return 128 + int(signum)
