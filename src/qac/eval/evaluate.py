"""Metrics of trained runs: FID (or a ``proxy_*`` Fréchet distance) and toy distances (docs/design.md §5).

Samples are generated in batches straight into the statistics, never written to disk. Sample k uses
seed ``seeds_start + k`` alone (its noise and its code; EDM protocol: seeds 0–49999 for FID-50k).

>>> from qac.metrics.proxies import PixelDetector
>>> res = fid_of_run("runs/digits", "ref.npz", PixelDetector(), nfe=4, num=256)  # doctest: +SKIP
>>> res.result.metric, res.nfe  # doctest: +SKIP
('proxy_pixel_fd', 4)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from qac.errors import QACError
from qac.metrics.detectors import Detector
from qac.metrics.fid import compute_stats, fid_from_stats
from qac.metrics.frechet import FIDResult
from qac.metrics.stats import Reference, load_reference
from qac.metrics.toy import TOY_METRICS, toy_report
from qac.sampling.spec import SamplingSpec
from qac.train.distributed import DistInfo, gather_objects, shard

#: Seed offset of the fresh toy reference data (far from the training seeds 0, 1, 2, ...).
TOY_REF_SEED = 10**6
RunLike = Any  # qac.train.run.LoadedRun or a run folder path


def open_run(run: RunLike, device: str | torch.device | None = "cpu") -> Any:
    """A :class:`qac.train.run.LoadedRun` from a run folder (or the loaded run itself)."""
    if isinstance(run, (str, Path)):
        from qac.train.run import load_run

        return load_run(run, device=device)
    return run


def seed_range(start: int, num: int) -> list[int]:
    """The seeds ``start .. start + num - 1`` (QACError for impossible ranges)."""
    if num < 1 or start < 0:
        raise QACError(f"need --num >= 1 and --seeds-start >= 0, got num={num}, start={start}")
    return list(range(start, start + num))


def seeds_label(seeds: Sequence[int]) -> str:
    """``"0-49999"`` for a contiguous range (how EDM writes it)."""
    return f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])


def sampling_spec(spec: SamplingSpec | None = None, **legacy: Any) -> SamplingSpec:
    """``spec``, or one built from the keyword form (solver, nfe, steps, afs, codes, schedule, sigma_min,
    sigma_max, rho and solver options) that the drivers also accept; not both."""
    if spec is not None:
        if legacy:
            raise QACError(f"give a SamplingSpec or sampler keywords, not both ({', '.join(legacy)})")
        return spec
    known = {k: legacy.pop(k) for k in ("solver", "steps", "nfe", "schedule", "afs", "sigma_min", "sigma_max",
                                        "rho", "codes") if k in legacy}
    return SamplingSpec(**known, opts=legacy)


def sample_batches(run: RunLike, seeds: Sequence[int], spec: SamplingSpec, *, batch_size: int = 256,
                   on_batch: Callable[[int, int], None] | None = None,
                   denoise_factory: Any = None) -> Iterator[torch.Tensor]:
    """Yield generated samples (float32 CPU; images clamped to [-1, 1]) for ``seeds`` in order, by batch.

    ``on_batch(n_items, nfe)`` is called after every batch (progress bars, NFE bookkeeping).
    """
    from qac.sampling.generate import generate

    run = open_run(run)
    spec = spec.for_formulation(run.model.formulation.name)
    weights = run.code_weights(spec.codes)
    image = len(run.model.item_shape) == 3
    for lo in range(0, len(seeds), batch_size):
        chunk = list(seeds[lo:lo + batch_size])
        out = generate(run.model, chunk, code_weights=weights, batch_size=batch_size,
                       denoise_factory=denoise_factory, **spec.sample_kwargs())
        if not bool(torch.isfinite(out.samples).all()):
            raise QACError(f"samples of {run.path} (step {getattr(run, 'step', '?')}) are NaN/Inf for seeds "
                           f"{chunk[0]}-{chunk[-1]}: its weights are diverged or damaged")
        if on_batch is not None:
            on_batch(len(chunk), out.nfe)
        yield out.samples.clamp(-1, 1) if image else out.samples


@dataclass(frozen=True)
class RunMetric:
    """One metric of one run under one sampler, with provenance. ``result`` is the FIDResult for
    Fréchet metrics (its ``metric`` is ``fid`` or ``proxy_*``); ``value``/``floor`` for set metrics."""

    run: str
    metric: str
    value: float
    solver: str
    nfe: int
    steps: int | None
    afs: bool
    codes: str
    n: int
    seeds: str
    seconds: float
    floor: float | None = None
    result: FIDResult | None = None
    schedule: str = "polynomial"

    @property
    def is_proxy(self) -> bool:
        """True for a ``proxy_*`` metric, which is never comparable to published FID."""
        return self.metric.startswith("proxy_")

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict, with ``result`` expanded and ``is_proxy`` added."""
        d = asdict(self)
        d["result"] = self.result.to_dict() if self.result is not None else None
        d["is_proxy"] = self.is_proxy
        return d


class _NfeRecorder:
    def __init__(self, bar: Any = None) -> None:
        self.nfe, self.bar = 0, bar

    def __call__(self, n: int, nfe: int) -> None:
        self.nfe = nfe
        if self.bar is not None:
            self.bar.update(n)


def fid_of_run(run: RunLike, ref: Reference | str | Path, detector: Detector, *, spec: SamplingSpec | None = None,
               num: int = 50_000, seeds_start: int = 0, batch_size: int = 256, kid_keep: int = 0,
               progress: bool = True, info: DistInfo | None = None, denoise_factory: Any = None,
               **sampler: Any) -> RunMetric:
    """FID (or the ``proxy_*`` distance of a proxy ``detector``) of ``num`` samples of ``run`` vs ``ref``.

    Seeds ``seeds_start .. seeds_start + num − 1``; images go from the sampler to the detector batch by
    batch. ``spec`` says how to sample (or the keywords of :func:`sampling_spec`: ``solver="heun", nfe=...``).
    The record names N, seeds, detector sha256, protocol (in ``result``), solver and NFE. Under
    torchrun (``info``) each rank samples its block of seeds and the statistics are merged
    (:mod:`qac.eval.distributed`); every rank returns the same result.

    >>> fid_of_run("runs/cifar", "cifar10-32x32.npz", open_detector(), solver="ipndm", nfe=6,
    ...            afs=True)  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    run = open_run(run)
    if len(run.model.item_shape) != 3:
        raise QACError(f"{run.path} is a point-data run: use a toy metric (energy_distance, w2, mmd)")
    ref = load_reference(ref) if isinstance(ref, (str, Path)) else ref
    seeds = seed_range(seeds_start, num)
    spec = sampling_spec(spec, **sampler)
    from qac.eval.distributed import merge_stats

    info = info or DistInfo()
    rec = _NfeRecorder()
    local = seeds[shard(len(seeds), info)]
    batches = sample_batches(run, local, spec, batch_size=batch_size, on_batch=rec, denoise_factory=denoise_factory)
    stats = compute_stats(batches, detector, keep=kid_keep, progress=progress and info.is_main, total=len(local))
    stats = merge_stats(stats, info)
    result = fid_from_stats(stats, ref, detector, seeds=seeds_label(seeds))
    nfe = max(gather_objects(rec.nfe, info))
    return RunMetric(str(run.path), result.metric, result.value, spec.solver, nfe, spec.steps, spec.afs, spec.codes,
                     result.n, seeds_label(seeds), time.perf_counter() - t0, result=result,
                     schedule=_schedule_name(spec, run))


def toy_reference(run: RunLike, num: int, seed: int = TOY_REF_SEED) -> torch.Tensor:
    """``num`` fresh points of a toy run's distribution (``toy:NAME``), else ``num`` of its data points."""
    from qac.data import sample_toy
    from qac.data.toy import parse_toy_source
    from qac.util import seed_generator

    run = open_run(run)
    source = run.config.data
    if source.startswith("toy:"):
        name, _ = parse_toy_source(source)
        return sample_toy(name, num, seed_generator(seed))
    data = run.dataset().as_float()
    perm = torch.randperm(data.shape[0], generator=torch.Generator().manual_seed(seed))
    return data[perm[:num]]


def toy_metric_of_run(run: RunLike, metric: str = "energy_distance", *, spec: SamplingSpec | None = None,
                      num: int = 2000, seeds_start: int = 0, batch_size: int = 4096,
                      reference: torch.Tensor | None = None, info: DistInfo | None = None,
                      denoise_factory: Any = None, **sampler: Any) -> RunMetric:
    """A toy distance (``energy_distance``, ``w2``, ``mmd``) of ``num`` samples vs fresh data, with its floor.

    The reference holds ``2·num`` fresh points (:func:`toy_reference`); :func:`qac.metrics.toy.toy_report`
    compares the samples with one half and reports the other half as the data-vs-data floor. ``spec`` (or
    the keywords of :func:`sampling_spec`; here the solver defaults to ``euler``) says how to sample.

    >>> toy_metric_of_run("runs/moons", "energy_distance", solver="euler", nfe=2).value  # doctest: +SKIP
    """
    if metric not in TOY_METRICS:
        raise QACError(f"unknown toy metric {metric!r}; choose from {sorted(TOY_METRICS)}")
    t0 = time.perf_counter()
    run = open_run(run)
    if len(run.model.item_shape) != 1:
        raise QACError(f"{run.path} is an image run: {metric!r} needs point data (use fid or proxy_*)")
    seeds = seed_range(seeds_start, num)
    if spec is None:
        sampler.setdefault("solver", "euler")
    spec = sampling_spec(spec, **sampler)
    from qac.eval.distributed import gather_cat

    info = info or DistInfo()
    rec = _NfeRecorder()
    local = seeds[shard(len(seeds), info)]
    mine = list(sample_batches(run, local, spec, batch_size=batch_size, on_batch=rec,
                               denoise_factory=denoise_factory))
    samples = gather_cat(torch.cat(mine) if mine else torch.zeros(0, *run.model.item_shape), info)
    rec.nfe = max(gather_objects(rec.nfe, info))
    ref = toy_reference(run, 2 * num) if reference is None else reference
    rep = toy_report(samples, ref, metrics=[metric])
    return RunMetric(str(run.path), metric, rep[metric], spec.solver, rec.nfe, spec.steps, spec.afs, spec.codes,
                     int(rep["n"]), seeds_label(seeds), time.perf_counter() - t0, floor=rep[f"{metric}_floor"],
                     schedule=_schedule_name(spec, run))


def _schedule_name(spec: SamplingSpec, run: Any) -> str:
    s = spec.for_formulation(run.model.formulation.name).schedule
    return s if isinstance(s, str) else "custom"
