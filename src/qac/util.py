"""Small shared helpers: devices, per-seed randomness, atomic file writes.

Everything here is deliberately tiny and free of global state.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from qac.errors import QACError


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """Return a torch device; ``None`` or ``"auto"`` picks CUDA when present, else CPU.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(name, torch.device):
        return name
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:  # e.g. "gpu"
        raise QACError(f"unknown device {name!r} (use cpu, cuda, cuda:N, mps or auto)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise QACError(f"device {name!r} requested but CUDA is not available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise QACError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise QACError(f"device {name!r} requested but MPS (Apple GPU) is not available on this machine")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise QACError(f"unsupported device {name!r} (use cpu, cuda, cuda:N, mps or auto)")
    return dev


def state_dtype(device: torch.device) -> torch.dtype:
    """Solver/state arithmetic dtype (docs/design.md §0): float64, except float32 on MPS."""
    return torch.float32 if device.type == "mps" else torch.float64


def seed_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh generator seeded with ``seed`` on ``device``."""
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(int(seed))
    return gen


def derive_seed(*keys: int) -> int:
    """A 32-bit seed derived from integer keys through numpy's SeedSequence (well mixed, collision-safe).

    Use it to give one sample or one training step several independent streams: torch's CPU generator
    keeps only the low 32 bits of a seed, so offsets such as ``seed + 2**40`` silently replay ``seed``.

    >>> derive_seed(1, 2) != derive_seed(2, 1)
    True
    """
    import numpy as np

    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def per_seed_randn(seeds: Sequence[int], shape: Iterable[int], device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Unit Gaussian noise, one row per seed; row k depends only on ``seeds[k]`` (EDM protocol).

    Noise is always drawn on the CPU in float32 and then moved, so that a seed gives the same
    sample on every device and whatever the batch size.

    >>> per_seed_randn([0, 1], (2,)).shape
    torch.Size([2, 2])
    """
    shape = tuple(shape)
    rows = [torch.randn(shape, generator=seed_generator(s)) for s in seeds]
    return torch.stack(rows).to(device=device, dtype=dtype)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def atomic_torch_save(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically ``torch.save`` a plain object (tensors, dicts, lists, numbers) to ``path``."""
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())
