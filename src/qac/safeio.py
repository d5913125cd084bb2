"""Reading files a user hands us, and checking outputs before long work: every failure is one QACError.

* :func:`read_json`, :func:`load_safetensors` and :func:`load_plain_torch` turn a missing, truncated,
  zero-byte, garbage or foreign file (a pickle renamed to ``.safetensors``, a ``resume.pt`` holding
  objects other than tensors) into a :class:`QACError` naming the file. Nothing executable is unpickled.
* :func:`check_writable` proves that an output path can be created and written (not under a regular file,
  not on a read-only or virtual file system, enough free space) *before* minutes of sampling or training.
* :func:`check_memory` refuses a job whose smallest possible working set exceeds the available memory,
  with a line that says what to lower, instead of letting the kernel kill the process.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from qac.errors import QACError

MIN_FREE_BYTES = 16 * 2**20  # refuse outputs on a file system with less than this free


def _reason(exc: BaseException) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return " ".join(text.split())[:160] or type(exc).__name__


def read_json(path: str | os.PathLike[str], what: str = "JSON file") -> Any:
    """Parse a JSON file; QACError naming the file if it is missing, unreadable or not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise QACError(f"{what} {path} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise QACError(f"{what} {path} is damaged or not JSON ({_reason(exc)})") from None


def read_safetensors(path: str | os.PathLike[str], what: str = "weights") -> tuple[dict[str, Any], dict[str, str]]:
    """Tensors and header metadata of a safetensors file; QACError naming it if missing, truncated or foreign."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise QACError(f"{what} file {path} is missing")
    try:
        with safe_open(str(path), framework="pt") as fh:
            return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata() or {})
    except Exception as exc:  # SafetensorError, OSError, ValueError: all mean "not a safetensors file"
        raise QACError(f"{what} file {path} is damaged or not a safetensors file ({_reason(exc)})") from None


def load_safetensors(path: str | os.PathLike[str], what: str = "weights") -> dict[str, Any]:
    """The tensors of a safetensors file (see :func:`read_safetensors`)."""
    return read_safetensors(path, what)[0]


def load_plain_torch(path: str | os.PathLike[str], what: str = "state file") -> Any:
    """``torch.load(weights_only=True)``: tensors, numbers, strings and containers only, never code."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise QACError(f"{what} {path} is missing")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise QACError(f"{what} {path} holds objects other than plain tensors and numbers; "
                       "refusing to unpickle it (it may be damaged or not from qac)") from None
    except Exception as exc:  # truncated zip, garbage bytes, EOF
        raise QACError(f"{what} {path} is damaged ({_reason(exc)})") from None


def check_writable(path: str | os.PathLike[str], *, is_dir: bool = True, option: str = "--out",
                   min_free: int = MIN_FREE_BYTES) -> Path:
    """Prove that ``path`` (a folder, or a file with ``is_dir=False``) can be created and written.

    Creates nothing that stays: a probe file is written and removed in the nearest existing ancestor.
    Raises QACError naming ``option`` and the path; returns the path.
    """
    path = Path(path).expanduser()
    if path.exists():
        if is_dir and not path.is_dir():
            raise QACError(f"{option} {path} is a file, not a folder")
        if not is_dir and not path.is_file():
            raise QACError(f"{option} {path} is {'a folder' if path.is_dir() else 'not a regular file'}")
    folder = path if is_dir else path.parent
    anchor = folder.absolute()
    while not anchor.exists():
        if anchor.parent == anchor:
            break
        anchor = anchor.parent
    if anchor.exists() and not anchor.is_dir():
        raise QACError(f"cannot write {option} {path}: {anchor} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=anchor, prefix=".qac-write-test-")
        try:
            os.write(fd, b"qac")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        hint = {errno.EROFS: "read-only file system", errno.ENOSPC: "disk full",
                errno.EACCES: "permission denied", errno.EPERM: "permission denied"}.get(exc.errno, _reason(exc))
        raise QACError(f"cannot write {option} {path}: {hint} in {anchor}") from None
    free = shutil.disk_usage(anchor).free
    if free < min_free:
        raise QACError(f"cannot write {option} {path}: only {free / 2**20:.1f} MiB free on the file system of "
                       f"{anchor} (need at least {min_free / 2**20:.0f} MiB)")
    return path


def available_memory() -> int:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``; total RAM elsewhere)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - exotic platforms
        return 2**62


def check_memory(nbytes: float, what: str, hint: str, *, fraction: float = 0.9) -> None:
    """QACError when a lower bound ``nbytes`` of a job's memory exceeds ``fraction`` of what is available."""
    avail = available_memory()
    if nbytes > fraction * avail:
        raise QACError(f"{what} needs at least {_size(nbytes)} of memory, only {_size(avail)} is available; {hint}")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover
