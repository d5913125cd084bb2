"""Training an aligner: sequential steps over a cached pool, or one global stage (docs/design.md §8).

Sequential mode (TimeTuner's, with the pool cache of the design notes): draw ``pool`` trajectories
(unit noise from their own seeds, and for QAC models a code per trajectory from the code weights, fixed
along it). For step ``i = 0..N-1`` train the parameters of the evaluations that belong to step ``i``
(:mod:`qac.align.plan`) on the loss of ``x_{i+1}``, then advance the pool through step ``i`` with them frozen.

The solver is never forked: every training evaluation runs the real solver through :func:`qac.sampling.sample`
with a *replay* denoiser. Evaluations of earlier steps return their cached outputs (no network call;
``dsm`` returns the clean data instead, so that the state at step ``i`` is exactly ``y + sigma_i n`` for every
consistent solver), evaluations of step ``i`` go live through :class:`AlignedDenoise` (gradients reach their
parameters only), and the run stops as soon as ``x_{i+1}`` is reported. Caching the evaluation outputs makes
the whole alignment O(N) network calls per pool item instead of the official O(N^2); ``cached=False``
replays the prefix through the network instead (same numbers, for checking).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from qac.align.aligned import AlignedDenoise
from qac.align.config import AlignConfig
from qac.align.file import Aligner
from qac.align.plan import EvalPlan, make_plan
from qac.align.targets import Target, nominal
from qac.errors import QACError
from qac.sampling import get_solver, sample
from qac.util import derive_seed, per_seed_randn


class _Stop(Exception):
    def __init__(self, x: Tensor) -> None:
        self.x = x


def _sum_sq(a: Tensor, b: Tensor) -> Tensor:
    """Sum over item dimensions, mean over the batch (EDM's reduction)."""
    return (a - b).pow(2).flatten(1).sum(1).mean()


class _Params:
    """Learned numbers per evaluation: ``u`` (delta = delta_max tanh u, or u), log out/state multipliers."""

    def __init__(self, k: int, cfg: AlignConfig, device: torch.device, init: Aligner | None) -> None:
        z = lambda: torch.zeros(k, dtype=torch.float64, device=device)  # noqa: E731
        self.cfg = cfg
        self.u, self.log_m, self.log_s = z(), z(), z()
        if init is not None:
            d = torch.tensor(init.delta, dtype=torch.float64, device=device)
            if cfg.delta_max is not None:
                d = torch.atanh((d / cfg.delta_max).clamp(-1 + 1e-12, 1 - 1e-12))
            self.u = d
            if init.out_scale is not None:
                self.log_m = torch.tensor(init.out_scale, dtype=torch.float64, device=device).log()
            if init.state_scale is not None:
                self.log_s = torch.tensor(init.state_scale, dtype=torch.float64, device=device).log()
        self.tensors = ([self.u] if cfg.delta else []) + ([self.log_m, self.log_s] if cfg.qsched else [])
        for t in self.tensors:
            t.requires_grad_(True)

    def delta(self) -> Tensor:
        return self.cfg.delta_max * torch.tanh(self.u) if self.cfg.delta_max is not None else self.u

    def scales(self) -> tuple[Tensor | None, Tensor | None]:
        if not self.cfg.qsched and not bool(self.log_m.any() or self.log_s.any()):
            return None, None
        return self.log_m.exp(), self.log_s.exp()

    def snapshot(self) -> list[Tensor]:
        return [t.detach().clone() for t in (self.u, self.log_m, self.log_s)]

    def restore(self, saved: list[Tensor], ks: list[int]) -> None:
        with torch.no_grad():
            for t, s in zip((self.u, self.log_m, self.log_s), saved):
                t[ks] = s[ks]

    def finite(self) -> bool:
        return all(bool(torch.isfinite(t).all()) for t in (self.u, self.log_m, self.log_s))


class _Trainer:
    def __init__(self, target: Target, cfg: AlignConfig, plan: EvalPlan, init: Aligner | None,
                 progress: bool, log: Callable[[str], None] | None, teacher_cache: dict | None = None) -> None:
        self.target, self.cfg, self.plan, self.progress, self.log = target, cfg, plan, progress, log
        self.teacher_cache = teacher_cache if teacher_cache is not None else {}
        dev = target.device
        seeds = range(cfg.pool_seed, cfg.pool_seed + cfg.pool)
        self.noise = per_seed_randn(seeds, target.item_shape, device=dev, dtype=torch.float64)
        self.y: Tensor | None = None
        if cfg.loss == "dsm":
            self.y, self.cond = target.data(cfg.pool, derive_seed(cfg.pool_seed, 0xD5))
        else:
            self.cond = target.conditions(seeds)
        self.params = _Params(plan.nfe, cfg, dev, init)
        self.cache: dict[int, Tensor] = {}
        self.states = self.noise * torch.tensor(plan.sigmas[0], dtype=torch.float64, device=dev)
        self.step_targets: Tensor | None = None
        self.train_rows = torch.arange(cfg.pool - cfg.val)
        self.val_rows = torch.arange(cfg.pool - cfg.val, cfg.pool)

    # ---- pieces -------------------------------------------------------------------------------------
    def _cond(self, rows: Tensor) -> Tensor | None:
        return None if self.cond is None else self.cond[rows.to(self.cond.device)]

    def _live(self, rows: Tensor, base_wrap: Callable | None = None) -> AlignedDenoise:
        base = self.target.bind(self._cond(rows))
        if base_wrap is not None:
            base = base_wrap(base)
        m, s = self.params.scales()
        return AlignedDenoise(base, self.params.delta(), mode=self.cfg.mode, sigma_range=self.target.sigma_range,
                              out_scale=m, state_scale=s)

    def replay(self, rows: Tensor, i: int) -> tuple[Tensor, Tensor, dict[int, Tensor]]:
        """Run the solver on ``rows`` up to ``x_{i+1}``; returns (x_{i+1}, x_i, live outputs of step i)."""
        plan, dev = self.plan, self.target.device
        live = self._live(rows)
        r = rows.to(dev)
        outs: dict[int, Tensor] = {}
        seen: dict[str, Tensor] = {}
        count = [0]

        def denoise(x: Tensor, sigma: Tensor) -> Tensor:
            k = count[0]
            count[0] += 1
            step = plan.eval_steps[k]
            if step > i:
                return x  # placeholder: the run stops at the report of step i + 1, before any use
            if step < i:
                if self.y is not None:
                    return self.y[r].to(x.dtype)
                if self.cfg.cached:
                    return self.cache[k][r]
                with torch.no_grad():
                    return live.evaluate(k, x, sigma)
            outs[k] = live.evaluate(k, x, sigma)
            return outs[k]

        def callback(info: dict[str, Any]) -> None:
            if info["i"] == i:
                seen["x_i"] = info["x"]
            elif info["i"] == i + 1:
                raise _Stop(info["x"])

        try:
            x_next = sample(denoise, self.noise[r], callback=callback, **plan.sample_kwargs()).samples
        except _Stop as stop:
            x_next = stop.x
        return x_next, seen["x_i"], outs

    def _sigma(self, i: int) -> Tensor:
        return torch.tensor(self.plan.sigmas[i], dtype=torch.float64, device=self.target.device)

    def _eps(self, rows: Tensor, x: Tensor, i: int) -> Tensor:
        """Nominal noise prediction (x - D(x; sigma_i)) / sigma_i of the unaligned model."""
        s = self._sigma(i)
        return (x - nominal(self.target, self._cond(rows))(x, s).to(x.dtype)) / s

    @torch.no_grad()
    def _target_of(self, rows: Tensor, x_i: Tensor, i: int) -> Tensor:
        """What step ``i`` is matched against, from the state ``x_i`` (tm: teacher; sc: eps at x_i)."""
        if self.cfg.loss == "sc":
            return self._eps(rows, x_i, i)
        a, b = math.log(self.plan.sigmas[i]), math.log(self.plan.sigmas[i + 1])
        sub = torch.linspace(a, b, self.cfg.teacher_substeps + 1, dtype=torch.float64).exp().to(x_i.device)
        return get_solver("heun").fn(nominal(self.target, self._cond(rows)), x_i, sub)

    def step_loss(self, rows: Tensor, i: int) -> Tensor:
        x_next, x_i, _ = self.replay(rows, i)
        if self.cfg.loss == "dsm":
            return _sum_sq(self._eps(rows, x_next, i + 1), self.noise[rows.to(x_next.device)])
        if self.cfg.cached:
            tgt = self.step_targets[rows.to(x_next.device)]
        else:
            tgt = self._target_of(rows, x_i, i)
        if self.cfg.loss == "sc":
            return _sum_sq(self._eps(rows, x_next, i + 1), tgt)
        return _sum_sq(x_next, tgt)

    def _chunks(self, rows: Tensor) -> list[Tensor]:
        return [rows[lo:lo + self.cfg.chunk] for lo in range(0, len(rows), self.cfg.chunk)]

    @torch.no_grad()
    def val_loss(self, i: int | None) -> float:
        tot = 0.0
        for rows in self._chunks(self.val_rows):
            loss = self.step_loss(rows, i) if i is not None else self.global_loss(rows)
            tot += float(loss) * len(rows)
        return tot / len(self.val_rows)

    def _optimise(self, loss_fn: Callable[[Tensor], Tensor], val_fn: Callable[[], float], ks: list[int], seed: int,
                  desc: str) -> dict[str, Any]:
        """Adam on the parameters of evaluations ``ks``; keeps them only if the held-out loss drops."""
        cfg, p = self.cfg, self.params
        saved = p.snapshot()
        before = val_fn()
        opt = torch.optim.Adam(p.tensors, lr=cfg.lr)
        gen = torch.Generator().manual_seed(seed)
        diverged = False
        for _ in tqdm(range(cfg.iters), desc=desc, disable=not self.progress, leave=False, unit="it"):
            rows = self.train_rows[torch.randint(len(self.train_rows), (cfg.batch,), generator=gen)]
            loss = loss_fn(rows)
            if not bool(torch.isfinite(loss)):
                diverged = True
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
            if not p.finite():
                diverged = True
                break
        after = val_fn() if not diverged else math.nan
        accepted = not diverged and math.isfinite(after) and after < before
        if not accepted:
            p.restore(saved, ks)
            if diverged and self.log is not None:
                self.log(f"{desc}: alignment diverged; keeping the previous parameters (delta = 0)")
        return {"loss_before": before, "loss_after": after if accepted else before, "accepted": accepted,
                "diverged": diverged}

    # ---- stages -------------------------------------------------------------------------------------
    def sequential(self) -> list[dict[str, Any]]:
        cfg, plan = self.cfg, self.plan
        steps_info = []
        all_rows = torch.arange(cfg.pool)
        for i in range(plan.steps):
            t0 = time.perf_counter()
            ks = plan.evals_of_step(i)
            if cfg.cached and cfg.loss in ("tm", "sc") and ks and not (cfg.loss == "sc" and i == plan.steps - 1):
                self.step_targets = torch.cat([self._target_of(r, self.states[r.to(self.states.device)], i)
                                               for r in self._chunks(all_rows)])
            info: dict[str, Any] = {"step": i, "evals": ks}
            if ks and cfg.iters > 0 and not (cfg.loss == "sc" and i == plan.steps - 1):
                info.update(self._optimise(lambda rows, i=i: self.step_loss(rows, i), lambda i=i: self.val_loss(i), ks,
                                           derive_seed(cfg.seed, i), f"align step {i + 1}/{plan.steps}"))
            if cfg.cached and cfg.loss != "dsm" and i < plan.steps - 1:
                self._advance(i, all_rows)
            info["seconds"] = round(time.perf_counter() - t0, 3)
            steps_info.append(info)
        return steps_info

    @torch.no_grad()
    def _advance(self, i: int, rows_all: Tensor) -> None:
        for rows in self._chunks(rows_all):
            x_next, _, outs = self.replay(rows, i)
            r = rows.to(x_next.device)
            for k, out in outs.items():
                if k not in self.cache:
                    self.cache[k] = torch.empty((self.cfg.pool,) + tuple(out.shape[1:]), dtype=out.dtype,
                                                device=out.device)
                self.cache[k][r] = out
            self.states[r] = x_next

    def global_loss(self, rows: Tensor) -> Tensor:
        wrap = None
        if self.cfg.checkpoint and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint

            wrap = lambda base: (lambda x, s, ns=None: checkpoint(base, x, s, ns, use_reentrant=False))  # noqa: E731
        live = self._live(rows, wrap)
        r = rows.to(self.target.device)
        out = sample(live, self.noise[r], **self.plan.sample_kwargs()).samples
        return _sum_sq(out, self.step_targets[r])

    def global_stage(self) -> list[dict[str, Any]]:
        cfg, plan = self.cfg, self.plan
        t0 = time.perf_counter()
        key = (cfg.pool_seed, cfg.pool, cfg.teacher_steps, plan.schedule, plan.sigma_min, plan.sigma_max, plan.rho)
        if key not in self.teacher_cache:
            with torch.no_grad():
                self.teacher_cache[key] = torch.cat([
                    sample(nominal(self.target, self._cond(r)), self.noise[r.to(self.noise.device)], solver="heun",
                           steps=cfg.teacher_steps, schedule=plan.schedule, sigma_min=plan.sigma_min,
                           sigma_max=plan.sigma_max, rho=plan.rho).samples
                    for r in self._chunks(torch.arange(cfg.pool))])
        self.step_targets = self.teacher_cache[key]
        info: dict[str, Any] = {"stage": "global", "evals": list(range(plan.nfe))}
        info.update(self._optimise(self.global_loss, lambda: self.val_loss(None), list(range(plan.nfe)),
                                   derive_seed(cfg.seed, 0x610B), "align global"))
        info["seconds"] = round(time.perf_counter() - t0, 3)
        return [info]


def align(target: Target, cfg: AlignConfig, *, init: Aligner | None = None, progress: bool = False,
          log: Callable[[str], None] | None = None, teacher_cache: dict | None = None) -> Aligner:
    """Train an aligner for ``target`` under ``cfg`` (see the module doc); ``init`` starts from a trained one
    (e.g. a ``global`` stage after a ``tm`` one). ``teacher_cache``: a dict kept by the caller across
    alignments of the *same target*; the ``global`` teacher's final samples depend only on the pool and the
    grid ends, not on the student solver or NFE, so they are computed once."""
    cfg = cfg.validate()
    if cfg.mode == "embed" and not target.network:
        raise QACError("mode 'embed' needs a network denoiser; use mode 'full' for a closed-form denoiser")
    plan = make_plan(cfg.solver, cfg.nfe, afs=cfg.afs, schedule=cfg.schedule, sigma_min=cfg.sigma_min,
                     sigma_max=cfg.sigma_max, rho=cfg.rho)
    if init is not None:
        init.check(target.identity, **{k: getattr(plan, k) for k in ("solver", "nfe", "afs", "schedule")})
    t0 = time.perf_counter()
    trainer = _Trainer(target, cfg, plan, init, progress, log, teacher_cache)
    with torch.enable_grad():
        steps = trainer.global_stage() if cfg.loss == "global" else trainer.sequential()
    p = trainer.params
    if not p.finite():
        raise QACError("alignment produced non-finite parameters")
    delta = tuple(float(v) for v in p.delta().detach().cpu())
    m, s = p.scales()
    stats = {"seconds": round(time.perf_counter() - t0, 3), "steps": steps}
    return Aligner(target.identity, plan, cfg.mode, cfg.loss, target.sigma_range, delta,
                   None if m is None else tuple(float(v) for v in m.detach().cpu()),
                   None if s is None else tuple(float(v) for v in s.detach().cpu()), cfg.to_dict(), stats)
