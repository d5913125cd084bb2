"""One trained benchmark run, described by a frozen :class:`RunSpec`, trained once and reused from a work folder.

The benchmarks (``benchmarks/toy2d.py`` through :mod:`qac.bench.toybench`, ``benchmarks/paper_tables.py``)
build their training configurations here, so a run has one recipe whichever benchmark asks for it:
Adam, linear warm-up over min(100, steps / 10) steps, EMA half-life of 1/20 of the images seen, no snapshots
or sample grids. :func:`train_or_reuse` keys the run folder by :attr:`RunSpec.name` and retrains only when
the folder holds no complete run of exactly this configuration.

>>> spec = RunSpec(data="toy:moons:20000", cond="qac", seed=1, steps=400, batch_size=256, levels=2, code_dim=6)
>>> spec.name
'moons-qac-L2d6-400x256-s1'
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from qac.conditions.fsq import DEFAULT_STE
from qac.conditions.modes import CONDITIONS
from qac.model import COND_MODES

#: Conditions that carry a code (levels and code_dim matter for them).
CODED = ("qac", "qac+rne", "vae")
#: Conditions with a KL term (beta matters for them: the noise encoder's, or the VAE code's).
KL_WEIGHTED = tuple(name for name, mode in CONDITIONS.items() if mode.default_beta is not None)


def cond_available(cond: str) -> bool:
    """Whether this build of the package trains ``--cond cond`` (``rne``, ``qac+rne``, ``vae`` arrive later)."""
    return cond in COND_MODES


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one benchmark run. ``data``: ``toy:NAME:N`` or an image set (``digits16``);
    ``arch``: ``auto`` picks the MLP for points. ``beta``: the KL weight (rne, qac+rne, vae; None: the
    condition's default)."""

    data: str
    cond: str
    seed: int
    steps: int
    batch_size: int
    levels: int = 2
    code_dim: int = 8
    beta: float | None = None
    arch: str = "auto"
    formulation: str = "rf"
    lr: float = 1e-3
    ste: str = DEFAULT_STE

    @property
    def task(self) -> str:
        """The data set's short name (``moons`` for ``toy:moons:20000``)."""
        return self.data.split(":")[1] if self.data.startswith("toy:") else self.data

    @property
    def name(self) -> str:
        """The run folder's name: task, condition, code, noise-encoder weight, budget, seed."""
        parts = [self.task, self.cond.replace("+", "_")]
        if self.cond in CODED:
            parts.append(f"L{self.levels}d{self.code_dim}" if self.cond != "vae" else f"d{self.code_dim}")
        if self.cond in KL_WEIGHTED and self.beta is not None:
            parts.append(f"b{self.beta:g}")
        if self.ste != DEFAULT_STE and self.cond in CODED:
            parts.append(f"ste-{self.ste}")
        if self.formulation != "rf":
            parts.append(self.formulation)
        parts += [f"{self.steps}x{self.batch_size}", f"s{self.seed}"]
        return "-".join(parts)

    def train_config(self):
        """The :class:`qac.train.TrainConfig` of this run (CPU)."""
        from qac.train import ModelConfig, TrainConfig

        extra = {"beta": self.beta} if self.cond in KL_WEIGHTED and self.beta is not None else {}
        if self.cond in CODED:  # code settings only where there is a code (one baseline run for every table)
            extra.update(levels=self.levels, code_dim=self.code_dim, ste=self.ste)
        arch = "mlp" if self.arch == "auto" and self.data.startswith("toy:") else self.arch
        model = ModelConfig(arch=arch, formulation=self.formulation, cond=self.cond, **extra)
        return TrainConfig(data=self.data, model=model, steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                           lr_warmup_steps=min(100, self.steps // 10),
                           ema_halflife_img=self.steps * self.batch_size / 20, seed=self.seed, device="cpu",
                           log_every=max(1, self.steps // 10), snapshot_every=10**9, grid_every=10**9)


def train_spec(spec: RunSpec, run_dir: str | Path) -> float:
    """Train ``spec`` into the (absent or empty) ``run_dir``; returns wall seconds (also stored beside it)."""
    from qac.train import train

    run_dir = Path(run_dir)
    t0 = time.perf_counter()
    if train(spec.train_config(), run_dir, progress=False).interrupted:
        raise SystemExit(f"training of {run_dir} was interrupted")
    seconds = time.perf_counter() - t0
    (run_dir / "bench_train.json").write_text(json.dumps({"train_s": seconds}))
    return seconds


def finished_seconds(spec: RunSpec, run_dir: str | Path) -> float | None:
    """Training seconds of a complete run of exactly ``spec`` in ``run_dir``, else None."""
    from qac.train.config import load_config

    run_dir = Path(run_dir)
    timing, stats, config = run_dir / "bench_train.json", run_dir / "stats.jsonl", run_dir / "config.json"
    if not (timing.exists() and stats.exists() and config.exists()):
        return None
    if load_config(config).to_dict() != spec.train_config().to_dict():
        return None
    lines = stats.read_text().splitlines()
    if not lines or json.loads(lines[-1])["step"] != spec.steps:
        return None
    return float(json.loads(timing.read_text())["train_s"])


def train_or_reuse(spec: RunSpec, workdir: str | Path, reuse: bool = True) -> tuple[Path, float, bool]:
    """``(run_dir, train_seconds, reused)``: the complete run of ``spec`` in ``workdir/spec.name`` if there is
    one (and ``reuse``), else a fresh one (an incomplete or different folder of that name is replaced)."""
    run_dir = Path(workdir) / spec.name
    seconds = finished_seconds(spec, run_dir) if reuse else None
    if seconds is not None:
        return run_dir, seconds, True
    if run_dir.exists():
        shutil.rmtree(run_dir)
    return run_dir, train_spec(spec, run_dir), False
