"""What an aligner is trained for: a trained run's (EMA) model, or the exact Gaussian-mixture bench.

A :class:`Target` binds per-row conditions (QAC codes, fixed along each trajectory) into a denoiser
``fn(x, sigma, noise_sigma=None)``, draws the conditions of the training pool, and, for the ``dsm`` loss,
clean data with their conditions. Its ``identity`` goes into the aligner file, which refuses to load
against anything else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from qac.align.aligned import NoiseDenoise
from qac.bench.gmm import GaussianMixture, bench_mixture
from qac.conditions import index_to_codes
from qac.errors import QACError
from qac.model import QACModel
from qac.sampling.generate import latent_codes
from qac.sampling.solvers._common import Denoise


@dataclass(frozen=True)
class Target:
    """A denoiser family to align: see the module doc. ``network`` says whether ``embed`` mode applies."""

    identity: dict[str, Any]
    item_shape: tuple[int, ...]
    device: torch.device
    sigma_range: tuple[float, float]
    network: bool
    bind: Callable[[Tensor | None], NoiseDenoise]
    conditions: Callable[[Sequence[int]], Tensor | None]
    data: Callable[[int, int], tuple[Tensor, Tensor | None]]


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 over the model's state (names, shapes and bytes): the identity of the weights actually used."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def bind_model(model: QACModel, y_q: Tensor | None) -> NoiseDenoise:
    """``fn(x, sigma, noise_sigma=None) = D(x, sigma, y_q)`` with the noise embedding at ``noise_sigma``."""

    def fn(x: Tensor, sigma: Tensor, noise_sigma: Tensor | None = None) -> Tensor:
        return model(x, sigma, y_q, noise_sigma=noise_sigma)

    return fn


def run_target(run: Any, code_source: str = "online") -> Target:
    """The target of a :class:`qac.train.run.LoadedRun`: its model with codes from its code weights."""
    model: QACModel = run.model
    device = next(model.parameters()).device
    weights = run.code_weights(code_source) if model.conditional else None

    def conditions(seeds: Sequence[int]) -> Tensor | None:
        if model.condition.continuous_code:
            return latent_codes(seeds, model.code_dim, device)
        if weights is None:
            return None
        return index_to_codes(weights.sample(seeds=list(seeds)).cpu(), model.levels, model.code_dim).to(device)

    def data(n: int, seed: int) -> tuple[Tensor, Tensor | None]:
        items = run.dataset().as_float()
        idx = torch.randint(items.shape[0], (n,), generator=torch.Generator().manual_seed(seed))
        y = items[idx].to(device)
        cond = None
        if model.conditional or model.condition.continuous_code:
            code = (lambda b: model.encode(b)[0]) if model.conditional else (lambda b: model.latent_posterior(b)[0])
            with torch.no_grad():
                cond = torch.cat([code(y[lo:lo + 512]) for lo in range(0, n, 512)])
        return y.to(torch.float64), cond

    identity = {"kind": "run", "path": str(run.path), "step": int(run.step),
                "weights_sha256": weights_sha256(model), "codes": code_source if model.conditional else None}
    return Target(identity, tuple(model.item_shape), device, (0.002, 80.0), True,
                  lambda cond: bind_model(model, cond), conditions, data)


def gmm_target(gmm: GaussianMixture | None = None, *, dim: int = 2, seed: int = 0) -> Target:
    """The exact bench: :func:`qac.bench.gmm.bench_mixture` (or ``gmm``) with its closed-form denoiser."""
    gmm = gmm if gmm is not None else bench_mixture(dim=dim, seed=seed)

    def bind(cond: Tensor | None) -> NoiseDenoise:
        def fn(x: Tensor, sigma: Tensor, noise_sigma: Tensor | None = None) -> Tensor:
            if noise_sigma is not None:
                raise QACError("mode 'embed' needs a network denoiser; the closed-form bench has only 'full'")
            return gmm.denoise(x, sigma)

        return fn

    def data(n: int, seed: int) -> tuple[Tensor, Tensor | None]:
        return gmm.sample(n, generator=torch.Generator().manual_seed(seed))[0], None

    h = hashlib.sha256(b"".join(t.numpy().tobytes() for t in (gmm.weights, gmm.means, gmm.variances)))
    identity = {"kind": "gmm", "dim": gmm.dim, "components": gmm.num_components, "params_sha256": h.hexdigest()}
    return Target(identity, (gmm.dim,), torch.device("cpu"), (1e-4, 1e4), False, bind, lambda seeds: None, data)


def nominal(target: Target, cond: Tensor | None) -> Denoise:
    """The unaligned denoiser ``D(x, sigma)`` of ``target`` for rows with conditions ``cond``."""
    fn = target.bind(cond)
    return lambda x, sigma: fn(x, sigma)
