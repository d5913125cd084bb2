"""Algorithm 2 of the paper (§4.4, ``docs/design.md §6``): zero-shot editing with adaptive conditions.

Given a reference ``z`` and a degradation (``A``, ``A⁻¹``, Ω — see :mod:`qac.edit.tasks`)::

    z ← A⁻¹[(Az)⊙(1−Ω)];  x ← z
    for σ_n in σ_1 > … > σ_N (Karras schedule, N = 40 by default, σ_max/σ_min of the model):
        y ← E(x)                      EMA encoder, quantized code, from the current estimate
        x ~ N(x, σ_n² I)              noise from a stream keyed by the sample's seed
        x ← D(x, σ_n, y)
        x ← A⁻¹[(Az)⊙(1−Ω) + (Ax)⊙Ω]  (the null-space form by default, see Degradation)

Options: ``code="fixed"`` encodes once (the code of ``E(z)`` at step 1) and keeps it; ``code="none"`` for a
model without a code (baseline, RNE); a ``--cond vae`` run is conditioned on its posterior mean (code index
-1); any schedule/N; several seeds per input for diverse results. Sample (input k, seed s)
depends only on z_k and s, never on the batch size. Cost: N denoiser calls plus N encoder calls
(1 with ``code="fixed"``, 0 for the baseline) per sample, nothing else of note.

>>> from qac.model import ModelConfig, build_model
>>> model = build_model(ModelConfig(arch="digits", code_dim=3, model_channels=8), "image", (1, 8, 8)).eval()
>>> out = edit(model, torch.zeros(2, 1, 8, 8), task="sr2", seeds=[0, 1], steps=3)
>>> tuple(out.results.shape), tuple(out.codes.shape)
((2, 2, 1, 8, 8), (2, 2, 3))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from qac.diffusion.formulations import default_sigma_range
from qac.edit.tasks import Degradation, MaskOptions, Projection, make_degradation
from qac.errors import QACError
from qac.model import QACModel
from qac.sampling.schedules import make_sigmas
from qac.util import derive_seed, seed_generator, state_dtype

CodeMode = Literal["adaptive", "fixed", "none"]
CODE_MODES: tuple[str, ...] = ("adaptive", "fixed", "none")
NOISE_STREAM = 0xED17  # keys the editing noise of a seed apart from its other streams


@dataclass(frozen=True)
class EditResult:
    """What :func:`edit` returns (all tensors on the CPU).

    inputs ``[K, C, H, W]`` the references z; degraded ``[K, C, H, W]`` the degraded input drawn as an image;
    results ``[K, S, C, H, W]`` (one per seed, not clamped); codes ``[K, S, N]`` the code index used at each
    step (-1 for the baseline); kept_error ``[K, S]`` ``‖(Ax − Az)⊙(1−Ω)‖₂`` of the results.
    """

    inputs: Tensor
    degraded: Tensor
    results: Tensor
    codes: Tensor
    kept_error: Tensor
    seeds: tuple[int, ...]
    sigmas: Tensor
    task: str
    code: str
    projection: str
    denoiser_calls: int
    encoder_calls: int


def edit_sigmas(model: QACModel, steps: int = 40, schedule: str | Sequence[float] = "polynomial", *,
                sigma_min: float | None = None, sigma_max: float | None = None,
                rho: float | None = None) -> Tensor:
    """The N noise levels σ_1 > … > σ_N of the loop (both ends included; a custom list is used as given)."""
    if not isinstance(schedule, str):
        return make_sigmas(list(schedule))
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise QACError(f"the number of editing steps must be an integer >= 1, got {steps!r}")
    lo, hi = default_sigma_range(model.formulation)
    lo, hi = sigma_min or lo, sigma_max or hi
    if steps == 1:
        return make_sigmas(schedule, 1, sigma_min=lo, sigma_max=hi, rho=rho)[:1]
    return make_sigmas(schedule, int(steps) - 1, sigma_min=lo, sigma_max=hi, rho=rho)


def resolve_code_mode(model: QACModel, code: str | None) -> str:
    """``None`` -> ``adaptive`` for a model with a code (QAC, or a VAE run's continuous code), ``none`` for
    one without (baseline, RNE); mismatches are errors."""
    coded = model.condition.code_input
    if code is None:
        return "adaptive" if coded else "none"
    if code not in CODE_MODES:
        raise QACError(f"code must be one of {', '.join(CODE_MODES)}, got {code!r}")
    if code != "none" and not coded:
        raise QACError(f"code={code!r} needs a model with a code, but this run has none (--cond {model.cond}); "
                       "use code 'none'")
    if code == "none" and coded:
        raise QACError(f"this --cond {model.cond} model needs codes: use code 'adaptive' or 'fixed'")
    return code


def encode_condition(model: QACModel, x: Tensor) -> tuple[Tensor, Tensor]:
    """Algorithm 2 line 5, ``y <- E(x)``: the quantized QAC code and its index; for a ``--cond vae`` run the
    posterior mean of its continuous code (the deterministic choice; index -1)."""
    if model.condition.continuous_code:
        mu, _ = model.latent_posterior(x)
        return mu, torch.full((len(x),), -1, dtype=torch.long, device=mu.device)
    return model.encode(x)


@torch.no_grad()
def edit(model: QACModel, images: Tensor, *, task: str | Degradation, seeds: Sequence[int] = (0,),
         steps: int = 40, schedule: str | Sequence[float] = "polynomial", sigma_min: float | None = None,
         sigma_max: float | None = None, rho: float | None = None, code: CodeMode | None = None,
         projection: Projection = "nullspace", mask: MaskOptions | None = None, batch_size: int = 64,
         progress: Callable[[int], None] | None = None,
         callback: Callable[[int, Tensor, Tensor], None] | None = None) -> EditResult:
    """Run Algorithm 2 on ``images`` ([K, C, H, W] in [-1, 1]) once per seed; see the module docstring.

    ``task`` is a task name (``sr2`` … ``inpaint-mask``, or names joined by ``+``) or a ready
    :class:`Degradation`. ``progress(n)`` is called with the number of (sample, step) pairs just done;
    ``callback(n, x, z)`` sees the state after step ``n`` of each batch (for checks and pictures).
    """
    if images.ndim != 4:
        raise QACError(f"images must be a [K, C, H, W] batch, got shape {tuple(images.shape)}")
    if len(images) == 0:
        raise QACError("no images to edit")
    if tuple(images.shape[1:]) != tuple(model.item_shape):
        raise QACError(f"images are {tuple(images.shape[1:])} but the model works on {tuple(model.item_shape)}")
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise QACError("no seeds: give at least one")
    if batch_size < 1:
        raise QACError(f"batch size must be >= 1, got {batch_size}")
    deg = task if isinstance(task, Degradation) else make_degradation(task, images.shape[1:], mask=mask,
                                                                       projection=projection)
    mode = resolve_code_mode(model, code)
    device = next(model.parameters()).device
    dtype = state_dtype(device)
    sigmas = edit_sigmas(model, steps, schedule, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
    rows = [(k, s) for k in range(len(images)) for s in seeds]
    results, codes = [], []
    for lo in range(0, len(rows), batch_size):
        chunk = rows[lo:lo + batch_size]
        z = images[[k for k, _ in chunk]].to(device=device, dtype=dtype)
        x, idx = _edit_batch(model, deg, z, [s for _, s in chunk], sigmas, mode, progress, callback)
        results.append(x.cpu())
        codes.append(idx.cpu())
    k, s = len(images), len(seeds)
    out = torch.cat(results).reshape(k, s, *images.shape[1:])
    refs = images.to(torch.float64).repeat_interleave(s, dim=0)
    err = deg.kept_error(out.reshape(k * s, *images.shape[1:]).to(torch.float64), refs).reshape(k, s)
    n = len(sigmas)
    enc = {"adaptive": n, "fixed": 1, "none": 0}[mode]
    return EditResult(images.cpu(), deg.view(images.cpu().to(torch.float64)).to(images.dtype), out,
                      torch.cat(codes).reshape(k, s, n), err, seeds, sigmas.cpu(), deg.name, mode,
                      deg.projection, n, enc)


def _edit_batch(model: QACModel, deg: Degradation, z: Tensor, seeds: list[int], sigmas: Tensor, mode: str,
                progress: Callable[[int], None] | None,
                callback: Callable[[int, Tensor, Tensor], None] | None) -> tuple[Tensor, Tensor]:
    """Algorithm 2 on one batch; returns the results and the code index of every step ([B, N])."""
    z_meas = deg.measure(z)
    x = deg.degrade(z)                                   # lines 2-3
    gens = [seed_generator(derive_seed(s, NOISE_STREAM)) for s in seeds]
    shape = tuple(z.shape[1:])
    indices = torch.full((len(z), len(sigmas)), -1, dtype=torch.long)
    y = None
    for n, sigma in enumerate(sigmas.tolist()):
        if mode == "adaptive" or (mode == "fixed" and n == 0):
            y, idx = encode_condition(model, x)          # line 5: y <- E(x)
        if y is not None:
            indices[:, n] = idx.cpu()
        noise = torch.stack([torch.randn(shape, generator=g) for g in gens]).to(device=z.device, dtype=z.dtype)
        x = x + sigma * noise                            # line 6: x ~ N(x, sigma^2 I)
        x = model(x, sigma, y).to(z.dtype)               # line 7: x <- D(x, sigma, y)
        x = deg.project(x, z_meas)                       # line 8
        if callback is not None:
            callback(n, x, z)
        if progress is not None:
            progress(len(z))
    return x, indices
