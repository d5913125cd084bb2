"""Sampling from a trained model: draw a code per seed, bind it in a closure, run any solver.

The sampling procedure of paper §3.4: (1) code index ~ Categorical(w / sum w), (2) noise, (3)-(4) any
deterministic or stochastic solver on D(x, sigma, y_q). Sample k depends only on seed k (its noise and
its code), never on the batch size. A VAE-condition model draws its code c ~ N(0, I) per seed instead
(:func:`latent_codes`); RNE models draw the noise from N(0, I), never from the encoder.

>>> import torch
>>> from qac.model import ModelConfig, build_model
>>> model = build_model(ModelConfig(arch="mlp", cond="qac", code_dim=3), "points", (2,))
>>> from qac.conditions import CodeWeights
>>> w = CodeWeights(2, 3); w.update(torch.arange(8), decay=0.0)
>>> out = generate(model, [0, 1, 2], code_weights=w, solver="euler", steps=4)
>>> out.samples.shape, out.indices.shape
(torch.Size([3, 2]), torch.Size([3]))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from qac.conditions import CodeWeights, index_to_codes
from qac.errors import QACError
from qac.model import QACModel
from qac.safeio import check_memory
from qac.sampling import get_solver, sample
from qac.sampling.flow import sample_flow
from qac.sampling.spec import auto_schedule
from qac.util import derive_seed, per_seed_randn, seed_generator, state_dtype

Denoise = Callable[[Tensor, Tensor], Tensor]
Velocity = Callable[[Tensor, Tensor], Tensor]
DenoiseFactory = Callable[[QACModel, Tensor | None], Denoise]
_SDE_STREAM = 0x5DE  # stochastic solvers draw from a stream of their own, still keyed by the sample's seed
LATENT_STREAM = 0x1A7E  # the VAE condition's per-seed code c ~ N(0, I)


def make_denoise(model: QACModel, y_q: Tensor | None) -> Denoise:
    """Bind codes y_q ([B, d], or None for the baseline) into ``denoise(x, sigma) -> x0_hat``."""

    @torch.no_grad()
    def denoise(x: Tensor, sigma: Tensor) -> Tensor:
        return model(x, sigma, y_q)

    return denoise


def make_velocity(model: QACModel, y_q: Tensor | None) -> Velocity:
    """Bind codes y_q into ``velocity(x_t, t) -> v`` of an rf model (the RF protocol, :mod:`qac.sampling.flow`)."""

    @torch.no_grad()
    def velocity(x: Tensor, t: Tensor) -> Tensor:
        return model.velocity(x, t, y_q)

    return velocity


@dataclass(frozen=True)
class Generated:
    """Samples (float, [-1,1] for images) with the code index used by each (-1 for the baseline).

    ``nfe``: evaluations of the last batch (adaptive solvers: keep batches large for tables); ``times``: the t
    grid of the RF protocol (its trajectory holds x_t); ``stats``: rk45 step counts summed over the batches;
    ``sigmas``: the sigma grid (of the last batch).
    """

    samples: Tensor
    indices: Tensor
    nfe: int
    trajectory: Tensor | None = None
    times: Tensor | None = None
    stats: dict[str, int] | None = None
    sigmas: Tensor | None = None


def generate(model: QACModel, seeds: Sequence[int], *, code_weights: CodeWeights | None = None,
             indices: Tensor | None = None, solver: str = "heun", steps: int | None = None,
             nfe: int | None = None, batch_size: int = 256, device: torch.device | None = None,
             return_trajectory: bool = False, progress: Callable[[int], None] | None = None,
             denoise_factory: DenoiseFactory | None = None, **sample_opts) -> Generated:
    """Generate one sample per seed with ``model`` (use the EMA copy) in batches.

    Codes: ``indices`` (one per seed, or one for all) fixes them; otherwise they are drawn per seed from
    ``code_weights``. A model without a QAC code (none, rne) ignores both; a vae model ignores the weights
    and refuses indices (its codes come from :func:`latent_codes`). ``sample_opts`` go to
    :func:`qac.sampling.sample` (schedule, sigma_min, sigma_max, rho, afs, solver options). ``schedule="flow"``
    runs the RF protocol (:func:`qac.sampling.flow.sample_flow`, rf models, solvers euler/heun/rk45);
    ``schedule="auto"`` picks it for rf models where it applies (:func:`qac.sampling.spec.auto_schedule`).
    """
    device = device or next(model.parameters()).device
    seeds = list(seeds)
    if not seeds:
        raise QACError("no seeds to sample")
    if batch_size < 1:
        raise QACError(f"batch size must be >= 1, got {batch_size}")
    stochastic = get_solver(solver).stochastic
    if sample_opts.get("schedule") == "auto":  # an aligner lives on a sigma schedule
        sample_opts["schedule"] = ("polynomial" if denoise_factory is not None
                                   else auto_schedule(model.formulation.name, solver))
    flow = sample_opts.get("schedule") == "flow"
    if flow:
        if model.formulation.name != "rf":
            raise QACError(f"schedule 'flow' (the rectified-flow protocol) is for rf models; this one is "
                           f"{model.formulation.name!r}")
        if denoise_factory is not None:
            raise QACError("an aligner works on sigma schedules; it cannot be used with schedule 'flow'")
        sample_opts = {k: v for k, v in sample_opts.items()
                       if k not in ("schedule", "sigma_min", "sigma_max", "rho") and not (k == "afs" and not v)}
    shape = _item_shape(model)
    check_sampling_memory(len(seeds), batch_size, shape, device)
    latent = model.condition.continuous_code
    if latent and indices is not None:
        raise QACError("a --cond vae model draws its code from N(0, I) per seed; fixed code indices do not apply")
    if model.conditional:
        if indices is None:
            if code_weights is None:
                raise QACError("a QAC model needs code weights or fixed code indices to sample")
            indices = code_weights.sample(seeds=seeds)  # index ~ Categorical(w / sum w), per seed
        indices = torch.as_tensor(indices, dtype=torch.long).reshape(-1).cpu()
        if indices.numel() == 1:
            indices = indices.expand(len(seeds))
        size = model.levels**model.code_dim
        if indices.numel() != len(seeds) or bool((indices < 0).any() or (indices >= size).any()):
            raise QACError(f"code indices must be one per seed and in [0, {size - 1}]")
    else:
        indices = torch.full((len(seeds),), -1, dtype=torch.long)
    model.eval()
    outs, trajs, used_nfe, stats, res = [], [], 0, None, None
    for lo in range(0, len(seeds), batch_size):
        chunk = seeds[lo:lo + batch_size]
        noise = per_seed_randn(chunk, shape, device=device, dtype=state_dtype(device))
        y_q = None
        if model.conditional:
            y_q = index_to_codes(indices[lo:lo + batch_size], model.levels, model.code_dim).to(device)
        elif latent:
            y_q = latent_codes(chunk, model.code_dim, device)
        sde_gens = [seed_generator(derive_seed(_SDE_STREAM, s), device) for s in chunk] if stochastic else None
        if flow:
            res = sample_flow(make_velocity(model, y_q), noise, solver=solver, steps=steps, nfe=nfe,
                              return_trajectory=return_trajectory, **sample_opts)
        else:
            denoise = (denoise_factory or make_denoise)(model, y_q)
            res = sample(denoise, noise, solver=solver, steps=steps, nfe=nfe,
                         return_trajectory=return_trajectory, generator=sde_gens, **sample_opts)
        stats = add_stats(stats, res.stats)
        outs.append(res.samples.float().cpu())
        if return_trajectory:
            trajs.append(res.trajectory.float().cpu())
        used_nfe = res.nfe
        if progress is not None:
            progress(len(chunk))
    traj = torch.cat(trajs, dim=1) if trajs else None
    return Generated(torch.cat(outs), indices.clone(), used_nfe, traj, res.times, stats, res.sigmas)


def add_stats(total: dict[str, int] | None, more: dict[str, int] | None) -> dict[str, int] | None:
    """Sum two solver-statistics dicts (rk45's ``nfe``/``accepted``/``rejected``) key by key; ``None`` is none.

    >>> add_stats(None, {"accepted": 2}), add_stats({"accepted": 2}, {"accepted": 3, "rejected": 1})
    ({'accepted': 2}, {'accepted': 5, 'rejected': 1})
    """
    if more is None:
        return total
    return {k: (total or {}).get(k, 0) + v for k, v in more.items()}


def latent_codes(seeds: Sequence[int], dim: int, device: torch.device | str = "cpu") -> Tensor:
    """The VAE condition's prior codes c ~ N(0, I_d), row k from a generator of its own keyed by ``seeds[k]``
    (stream :data:`LATENT_STREAM`, independent of the sample's noise stream).

    >>> latent_codes([3], 2).equal(latent_codes([0, 3], 2)[1:])
    True
    """
    return per_seed_randn([derive_seed(LATENT_STREAM, s) for s in seeds], (dim,), device=device)


def check_sampling_memory(num: int, batch_size: int, shape: tuple[int, ...], device: torch.device) -> None:
    """Refuse up front what cannot fit: the float32 results of all ``num`` samples (kept on the CPU) plus, on
    the CPU, one batch of solver state (about a dozen float64 copies of the batch; a lower bound that ignores
    the network's activations)."""
    item = math.prod(shape)
    need = 4.0 * num * item
    if torch.device(device).type == "cpu":
        need += 12 * 8.0 * min(batch_size, num) * item
    check_memory(need, f"sampling {num:,} seeds in batches of {min(batch_size, num):,}",
                 "lower --batch or sample fewer seeds per call")


def _item_shape(model: QACModel) -> tuple[int, ...]:
    shape = getattr(model, "item_shape", None)
    if shape is None:
        raise QACError("model has no item_shape; build it with qac.train.build_model")
    return tuple(shape)
