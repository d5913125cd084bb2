"""The aligner file (JSON): what was aligned, for which sampler, and the learned numbers.

Keys: ``format``, ``target`` (run path, step and sha256 of the weights; or the GMM bench), ``solver``,
``nfe``, ``steps``, ``afs``, ``schedule``, ``sigma_min``, ``sigma_max``, ``rho``, ``sigmas`` (the grid),
``eval_sigmas``/``eval_steps`` (the evaluation plan, :mod:`qac.align.plan`), ``mode``, ``loss``,
``sigma_range``, ``delta`` (one log-offset per evaluation), ``out_scale``/``state_scale`` (Q-Sched
multipliers or null), ``config`` and ``stats`` (training record). Loading checks every number is finite
and the lengths agree; :meth:`Aligner.check` refuses another run, solver, NFE, AFS or schedule.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from qac.align.aligned import AlignedDenoise, NoiseDenoise, check_mode
from qac.align.plan import EvalPlan
from qac.errors import QACError

FORMAT = "qac-aligner/1"
_PLAN_KEYS = ("solver", "nfe", "steps", "afs", "schedule", "sigma_min", "sigma_max", "rho")


@dataclass(frozen=True)
class Aligner:
    """A trained aligner (see the module doc). ``denoiser(base)`` wraps a denoiser for one sampling run."""

    target: dict[str, Any]
    plan: EvalPlan
    mode: str
    loss: str
    sigma_range: tuple[float, float]
    delta: tuple[float, ...]
    out_scale: tuple[float, ...] | None = None
    state_scale: tuple[float, ...] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_mode(self.mode)
        k = self.plan.nfe
        for name in ("delta", "out_scale", "state_scale"):
            vals = getattr(self, name)
            if vals is None:
                continue
            if len(vals) != k:
                raise QACError(f"aligner {name} has {len(vals)} values for {k} evaluations")
            if not all(math.isfinite(v) for v in vals):
                raise QACError(f"aligner {name} holds non-finite values")

    # ---- use ----------------------------------------------------------------------------------------
    def denoiser(self, base: NoiseDenoise, device: torch.device | str = "cpu") -> AlignedDenoise:
        """A fresh :class:`AlignedDenoise` (counter at 0) around ``base`` with these numbers."""
        t = lambda v: None if v is None else torch.tensor(v, dtype=torch.float64, device=device)  # noqa: E731
        return AlignedDenoise(base, t(self.delta), mode=self.mode, sigma_range=self.sigma_range,
                              out_scale=t(self.out_scale), state_scale=t(self.state_scale),
                              nominal=list(self.plan.eval_sigmas))

    def factory(self):
        """A ``denoise_factory(model, y_q)`` for :func:`qac.sampling.generate.generate` (no gradients)."""
        from qac.align.targets import bind_model

        def make(model, y_q: Tensor | None):
            fn = self.denoiser(bind_model(model, y_q), next(model.parameters()).device)

            @torch.no_grad()
            def denoise(x: Tensor, sigma: Tensor) -> Tensor:
                return fn(x, sigma)

            return denoise

        return make

    def check(self, target: dict[str, Any] | None = None, **plan: Any) -> Aligner:
        """Refuse (QACError) another target (compared by weights hash) or another sampler setting."""
        if target is not None:
            key = "weights_sha256" if target.get("kind") == "run" else "params_sha256"
            if target.get("kind") != self.target.get("kind") or target.get(key) != self.target.get(key):
                raise QACError(f"the aligner was trained for {self._target_label(self.target)}, not for "
                               f"{self._target_label(target)}")
        for name, value in plan.items():
            if name not in _PLAN_KEYS:
                raise KeyError(name)
            mine = getattr(self.plan, name)
            same = (mine == value) if not isinstance(mine, float) or value is None else math.isclose(mine, value)
            if value is not None and not same:
                raise QACError(f"the aligner was trained for {name} = {mine!r}, not {value!r} "
                               f"({self.plan.solver}, NFE {self.plan.nfe}{', afs' if self.plan.afs else ''})")
        return self

    @staticmethod
    def _target_label(t: dict[str, Any]) -> str:
        if t.get("kind") == "run":
            return f"run {t.get('path')} (weights sha256 {str(t.get('weights_sha256'))[:12]}...)"
        return f"{t.get('kind')} {t.get('params_sha256', '')[:12]}"

    # ---- storage ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the aligner file (keys in the module doc, ``format`` = ``qac-aligner/1``)."""
        d = {"format": FORMAT, "target": self.target}
        d.update(self.plan.to_dict())
        d.update({"mode": self.mode, "loss": self.loss, "sigma_range": list(self.sigma_range),
                  "delta": list(self.delta), "out_scale": _opt_list(self.out_scale),
                  "state_scale": _opt_list(self.state_scale), "config": self.config, "stats": self.stats})
        return d

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` to ``path`` as JSON, atomically; returns the path."""
        from qac.util import atomic_write_json

        path = Path(path)
        atomic_write_json(path, self.to_dict())
        return path

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Aligner:
        """Rebuild an aligner from :meth:`to_dict` output; :class:`QACError` for another format, missing or malformed
        keys, lengths that disagree with the NFE or non-finite numbers.
        """
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise QACError(f"not an aligner file (format {d.get('format') if isinstance(d, dict) else None!r}, "
                           f"expected {FORMAT!r})")
        try:
            plan = EvalPlan(**{k: d[k] for k in EvalPlan.__dataclass_fields__})
            plan = EvalPlan(**{**asdict(plan), "sigmas": tuple(plan.sigmas), "eval_sigmas": tuple(plan.eval_sigmas),
                               "eval_steps": tuple(plan.eval_steps)})
            return cls(d["target"], plan, d["mode"], d["loss"], tuple(d["sigma_range"]), tuple(map(float, d["delta"])),
                       _opt_tuple(d.get("out_scale")), _opt_tuple(d.get("state_scale")), d.get("config", {}),
                       d.get("stats", {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise QACError(f"aligner file is incomplete or malformed: {exc!r}") from None

    @classmethod
    def load(cls, path: str | Path) -> Aligner:
        """Read an aligner JSON file; :class:`QACError` when it is missing, unreadable or malformed."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise QACError(f"aligner file {path} not found") from None
        except (OSError, ValueError) as exc:
            raise QACError(f"cannot read aligner file {path}: {exc}") from None
        return cls.from_dict(d)


def _opt_list(v: tuple[float, ...] | None) -> list[float] | None:
    return None if v is None else list(v)


def _opt_tuple(v: Any) -> tuple[float, ...] | None:
    return None if v is None else tuple(float(x) for x in v)
