"""Descriptions of runs and presets for ``qac info``: config, parameter counts, code usage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from qac.errors import QACError
from qac.model import ModelConfig, QACModel, build_model
from qac.nn import UNET_PRESETS, count_params


def param_counts(model: QACModel) -> dict[str, Any]:
    """Parameters of the denoiser (incl. the code embedding), the encoder (and its heads), and their ratio."""
    den = count_params(model.denoiser)
    enc = count_params(model.encoder) if model.encoder is not None else 0
    emb = count_params(model.denoiser.backbone.map_code) if getattr(
        model.denoiser.backbone, "map_code", None) is not None else 0
    out = {"denoiser": den, "code_embedding": emb, "denoiser_without_qac": den - emb, "encoder": enc}
    if model.encoder is not None:
        heads = {f"encoder_head_{n}": count_params(model.encoder.head(n)) for n in model.encoder.head_names}
        out.update({"encoder_backbone": enc - sum(heads.values()), **heads})
    return {**out, "encoder_over_denoiser": enc / den if den else 0.0, "total": den + enc}


def describe_preset(arch: str, data: str | None, cond: str, levels: int, code_dim: int) -> dict[str, Any]:
    """Parameter counts of a preset, built on the meta device (no memory, instant even for 56M params)."""
    if data is not None:
        from qac.data import open_dataset

        ds = open_dataset(data)
        kind, shape = ds.kind, tuple(ds.shape)
    elif arch == "mlp":
        kind, shape = "points", (2,)
    elif arch in UNET_PRESETS:
        p = UNET_PRESETS[arch]
        kind, shape = "image", (p.in_channels, p.img_resolution, p.img_resolution)
    else:
        raise QACError(f"unknown arch {arch!r}; choose mlp or one of {', '.join(UNET_PRESETS)}")
    cfg = ModelConfig(arch=arch, cond=cond, levels=levels, code_dim=code_dim)
    with torch.device("meta"):
        model = build_model(cfg, kind, shape)
    return {"arch": arch, "item_shape": list(shape), "cond": cond, "codebook": cfg.codebook_size,
            "kl_weight": cfg.kl_weight, "params": param_counts(model)}


def describe_run(run_dir: Path) -> dict[str, Any]:
    """Config, step, parameter counts and code statistics (online and, if collected, offline)."""
    from qac.train.run import load_run

    run = load_run(run_dir, device="cpu")
    report: dict[str, Any] = {"run": str(run_dir), "step": run.step, "cond": run.config.model.cond,
                              "kl_weight": run.config.model.kl_weight, "params": param_counts(run.model),
                              "config": json.loads((run_dir / "config.json").read_text())}
    if run.model.conditional:
        report["codes_online"] = run.code_weights("online").stats()
        if (run_dir / "codes_offline.safetensors").exists():
            report["codes_offline"] = run.code_weights("offline").stats()
    return report


def describe_recipe(name: str, measure_steps: int = 3, measure_batch: int | None = None) -> dict[str, Any]:
    """A recipe's resolved config, parameter counts and, unless ``measure_steps == 0``, an ESTIMATE of its cost
    from the training throughput measured here and now (one process on this machine's default device, a
    small batch, synthetic images): images/s and device-hours for the recipe's duration."""
    from qac.train.recipes import get_recipe, resolve_recipe
    from qac.train.throughput import measure_train
    from qac.util import resolve_device

    recipe = get_recipe(name)
    cfg = resolve_recipe(name)
    preset = UNET_PRESETS[recipe.arch]
    shape = (preset.in_channels, preset.img_resolution, preset.img_resolution)
    with torch.device("meta"):
        model = build_model(cfg.model, "image", shape)
    report: dict[str, Any] = {"recipe": name, "summary": recipe.summary, "expects_data": recipe.data,
                              "config": cfg.to_dict(), "params": param_counts(model),
                              "images_total": cfg.steps * cfg.batch_size}
    if measure_steps > 0:
        device = resolve_device("auto")
        batch = measure_batch or (4 if device.type == "cpu" else 64)
        img_s = measure_train(cfg.replace(batch_size=batch, batch_gpu=None), shape, steps=measure_steps,
                              device=device)
        hours = cfg.steps * cfg.batch_size / img_s / 3600
        report["estimate"] = {
            "note": "ESTIMATE, not a measurement of the recipe: training throughput timed over "
                    f"{measure_steps} steps of batch {batch} on this machine ({device.type}), one process, "
                    "extrapolated linearly to the recipe's duration",
            "device": str(device), "measured_batch": batch, "images_per_s": round(img_s, 2),
            "device_hours": round(hours, 1), "days_on_8_such_devices": round(hours / 8 / 24, 2)}
    return report
