"""Per-t L_CFM and ODE-trajectory curvature of a trained run (paper Tab. 1, Eq. 12/17; docs/design.md §5).

* L_CFM(t) on held-out data: for QAC each clean x₀ gets **its own code** from the EMA encoder,
  y_q = E(x₀) (bound through the ``x0_batch`` argument of :func:`qac.metrics.cfm.cfm_loss_curve`);
  the baseline ignores it. The pairs use the training coupling: RNE draws x₁ ~ q(x₁ | x₀) from its
  encoder (:func:`training_coupling`), the VAE condition binds its code's posterior mean.
  Per-dimension mean, rectified-flow time t (t = 0 data, t = 1 noise).
* Curvature (RNE ``utils.straightness``, docs/design.md §5): Euler with K steps (default 100) from prior
  noise (QAC: codes drawn from the code weights). An rf run uses the RF protocol's own grid, uniform in t
  from t = 1 (x_1 = n) to 0 (:mod:`qac.sampling.flow`, RNE's estimator); other runs a grid uniform in
  t = σ/(1+σ) from t_max = σ_max/(1+σ_max), measured with :func:`qac.metrics.trajectory.curvature_sigma`.
  Euler in σ-space is the same map as Euler on the RF velocity on such a grid (both are DDIM). A
  :class:`qac.sampling.spec.SamplingSpec` may name another fixed-grid solver or schedule.

>>> rep = analyze_run("runs/moons", num=2000)  # doctest: +SKIP
>>> rep["curvature"] >= 0  # doctest: +SKIP
True
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from qac.conditions.modes import reparameterize
from qac.errors import QACError
from qac.eval.evaluate import open_run, toy_reference
from qac.metrics.cfm import CondDenoiseFn, Coupling, cfm_loss_curve
from qac.metrics.trajectory import curvature, sigma_to_rf
from qac.sampling.spec import SamplingSpec, auto_schedule

DEFAULT_TS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
#: Largest sigma of the uniform-t curvature grid, per formulation (rf is trained up to t = 1 − 1e-4).
SIGMA_MAX = {"rf": 999.0, "edm": 80.0, "vp": 80.0, "ve": 80.0}


def rf_uniform_sigmas(steps: int, sigma_max: float = 80.0) -> list[float]:
    """``steps + 1`` sigmas uniform in RF time t = σ/(1+σ), from σ_max down to exactly 0.

    >>> rf_uniform_sigmas(2, 1.0)
    [1.0, 0.3333333333333333, 0.0]
    """
    if steps < 1 or sigma_max <= 0:
        raise QACError(f"need steps >= 1 and sigma_max > 0, got {steps}, {sigma_max}")
    t_max = sigma_max / (1.0 + sigma_max)
    ts = [t_max * (1.0 - k / steps) for k in range(steps + 1)]
    return [sigma_max] + [t / (1.0 - t) for t in ts[1:-1]] + [0.0]


def code_denoise_fn(model: Any) -> CondDenoiseFn:
    """``denoise_fn(x_sigma, sigma, x0_batch)`` for :func:`cfm_loss_curve`; QAC binds y_q = E(x0_batch), the
    VAE condition the posterior mean mu(x0_batch) of its code (deterministic, so every t sees one code)."""

    @torch.no_grad()
    def denoise(x: torch.Tensor, sigma: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        y_q = None
        if model.conditional:
            y_q = model.encode(x0)[0]
        elif model.condition.continuous_code:
            y_q = model.latent_posterior(x0)[0]
        return model(x, sigma, y_q)

    return denoise


def training_coupling(model: Any) -> Coupling | None:
    """The (x0, n) -> x1 coupling the model was trained with: RNE's x1 = mu(x0) + exp(logvar(x0)/2) n for
    rne/qac+rne (the encoder's q(x1 | x0)), ``None`` (independent, x1 = n) otherwise."""
    if not model.condition.noise_encoder:
        return None

    @torch.no_grad()
    def coupling(x0: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        mu, logvar = model.noise_posterior(x0)
        return reparameterize(mu.to(n.dtype), logvar.to(n.dtype), n)

    return coupling


def held_out_data(run: Any, num: int, seed: int = 12345) -> tuple[torch.Tensor, str]:
    """Evaluation points for L_CFM: fresh draws for toy runs; otherwise a seeded subset of the data set
    (no held-out split exists for image sets: the label says so)."""
    if run.config.data.startswith("toy:"):
        return toy_reference(run, num, seed=seed), f"{num} fresh points of {run.config.data} (seed {seed})"
    data = run.dataset().as_float()
    perm = torch.randperm(data.shape[0], generator=torch.Generator().manual_seed(seed))[:num]
    return data[perm], f"{len(perm)} items of the training set {run.config.data} (no held-out split)"


def curvature_spec(run: Any, spec: SamplingSpec | None = None, *, steps: int = 100,
                   sigma_max: float | None = None, codes: str = "online") -> SamplingSpec:
    """The sampler of the curvature trajectories: ``spec`` (default Euler, ``steps``) with ``auto`` resolved
    to the rf protocol (rf runs) or a uniform-t sigma grid from ``sigma_max`` (default :data:`SIGMA_MAX`)."""
    spec = spec if spec is not None else SamplingSpec(solver="euler", steps=steps, codes=codes)
    if spec.solver == "rk45":
        raise QACError("curvature needs a fixed grid: use euler (RNE), heun or another fixed-step solver, not rk45")
    form = run.model.formulation.name
    if spec.schedule == "auto":
        if auto_schedule(form, spec.solver) == "flow":
            return spec.replace(schedule="flow")
        if spec.steps is None:
            raise QACError("a uniform-t curvature grid needs --steps, not --nfe")
        if sigma_max is None:  # a --sigma-max left at its default means the formulation's own top
            sigma_max = SIGMA_MAX.get(form, 80.0) if spec.sigma_max == SamplingSpec.sigma_max else spec.sigma_max
        top = sigma_max
        return spec.replace(schedule=tuple(rf_uniform_sigmas(spec.steps, top)), steps=None)
    return spec.for_formulation(form)


def trajectory_curvature(run: Any, seeds: Sequence[int], *, steps: int = 100, sigma_max: float | None = None,
                         codes: str = "online", batch_size: int = 4096,
                         spec: SamplingSpec | None = None) -> dict[str, Any]:
    """Trajectories of :func:`curvature_spec` and their RNE curvature in RF time (mean over ``seeds``).

    Returns ``{"curvature", "per_step" [K] (mean ‖v̂_k − chord‖² per dimension), "t" [K+1], "trajectory"
    [K+1, B, ...] in RF space (float32, CPU), "samples", "indices", "sampler"}``.
    """
    from qac.sampling.generate import generate

    run = open_run(run)
    spec = curvature_spec(run, spec, steps=steps, sigma_max=sigma_max, codes=codes)
    out = generate(run.model, list(seeds), code_weights=run.code_weights(spec.codes), return_trajectory=True,
                   batch_size=batch_size, **spec.sample_kwargs())
    if out.times is not None:  # the rf protocol: the trajectory is x_t already
        x_t, t = out.trajectory.double(), out.times.double().cpu()
    else:
        x_t, t = sigma_to_rf(out.trajectory, out.sigmas.double().cpu())
    curv = float(curvature(x_t, t))
    x = x_t.flatten(2)
    ds = (t[1:] - t[:-1]) / (t[-1] - t[0])
    vel = (x[1:] - x[:-1]) / ds[:, None, None]
    per_step = ((vel - (x[-1] - x[0])) ** 2).mean(dim=(1, 2))
    top = float("inf") if out.times is not None else float(out.sigmas[0])
    return {"curvature": curv, "per_step": per_step.tolist(), "t": t.tolist(), "steps": len(t) - 1,
            "sigma_max": top, "trajectory": x_t.float(), "samples": out.samples, "indices": out.indices,
            "sampler": spec.label()}


def analyze_run(run: Any, *, num: int = 2000, ts: Sequence[float] = DEFAULT_TS, curvature_steps: int = 100,
                sigma_max: float | None = None, seeds_start: int = 0, codes: str = "online",
                batch_size: int = 512, progress: bool = False, spec: SamplingSpec | None = None) -> dict[str, Any]:
    """L_CFM(t) on held-out data and Euler-trajectory curvature of ``run`` (conditional or not).

    ``spec`` (default: Euler with ``curvature_steps``, ``codes``) is the sampler of the curvature trajectories
    (:func:`curvature_spec`); its ``codes`` also picks the code weights.

    Returns a JSON-ready dict: ``lcfm`` {t: loss}, ``lcfm_mean`` (mean over the given t), ``curvature``,
    ``curvature_per_step``, ``t_grid``, and provenance (run, step, conditional, data, seeds, steps).
    """
    t0 = time.perf_counter()
    run = open_run(run)
    if num < 2:
        raise QACError(f"--num must be >= 2, got {num}")
    x0, data_label = held_out_data(run, num)
    device = next(run.model.parameters()).device
    gen = torch.Generator().manual_seed(seeds_start)
    lcfm = cfm_loss_curve(code_denoise_fn(run.model), x0.to(device), ts, generator=gen, batch_size=batch_size,
                          progress=progress, coupling=training_coupling(run.model))
    seeds = list(range(seeds_start, seeds_start + num))
    cur = trajectory_curvature(run, seeds, steps=curvature_steps, sigma_max=sigma_max, codes=codes,
                               batch_size=batch_size, spec=spec)
    codes = spec.codes if spec is not None else codes
    return {
        "run": str(run.path), "step": run.step, "conditional": bool(run.model.conditional), "cond": run.model.cond,
        "formulation": run.model.formulation.name, "data": data_label, "num": num,
        "seeds": f"{seeds[0]}-{seeds[-1]}", "codes": codes if run.model.conditional else None,
        "lcfm": {f"{t:g}": v for t, v in lcfm.items()}, "lcfm_mean": sum(lcfm.values()) / len(lcfm),
        "curvature": cur["curvature"], "curvature_steps": cur["steps"], "curvature_sampler": cur["sampler"],
        "curvature_grid": "rf protocol (uniform t from 1)" if cur["sigma_max"] == float("inf") else "sigma grid",
        "sigma_max": cur["sigma_max"], "curvature_per_step": cur["per_step"], "t_grid": cur["t"],
        "seconds": time.perf_counter() - t0,
    }


def plot_analysis(report: dict[str, Any], path: str | Path) -> Path:
    """Two panels: L_CFM(t) and the per-step deviation ‖v̂_k − chord‖² along the Euler grid."""
    from qac.metrics.plots import pyplot, save_figure

    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    ts = [float(t) for t in report["lcfm"]]
    a.plot(ts, list(report["lcfm"].values()), "o-")
    a.set_xlabel("t (0 = data, 1 = noise)")
    a.set_ylabel("L_CFM(t) per dim")
    a.set_title(f"L_CFM, mean {report['lcfm_mean']:.3g}")
    tg = report["t_grid"]
    mids = [(tg[k] + tg[k + 1]) / 2 for k in range(len(tg) - 1)]
    b.plot(mids, report["curvature_per_step"])
    b.set_xlabel("t")
    b.set_ylabel("per-step deviation")
    b.set_title(f"curvature {report['curvature']:.3g} ({report.get('curvature_sampler', 'euler')}, "
                f"K={report['curvature_steps']})")
    fig.suptitle(Path(report["run"]).name)
    return save_figure(fig, path)
