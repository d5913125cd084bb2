"""The built-in demo: baseline vs QAC on scikit-learn digits, trained and compared in minutes on a CPU.

``qac demo --out runs/demo`` trains two small 8x8 models with the same budget (one plain EDM, one with
quantized adaptive conditions), samples both at a few NFE with the same seeds and solver, and writes a
report folder::

    report.md           what was run, the numbers, and the pictures
    samples.png         baseline | QAC side by side, one row per NFE
    codes.png           QAC samples sharing a code: one row per frequent code (the learned pseudo-labels)
    code_usage.png      online code weights, sorted (matplotlib)
    losses.png          training loss of both runs (matplotlib)
    results.json        every number in the report
    baseline/, qac/     the two run folders (usable with qac sample / qac info)

The score is ``proxy_pixel_fd`` (a Fréchet distance of raw pixels against the 1797 training digits):
a proxy, not FID. Everything is deterministic given ``seed``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw

from qac.conditions.fsq import DEFAULT_STE
from qac.data import open_dataset
from qac.errors import QACError
from qac.info import param_counts
from qac.metrics import proxy_pixel_fd
from qac.model import SteMode
from qac.sampling.generate import generate
from qac.train import ModelConfig, TrainConfig, train
from qac.train.run import LoadedRun, load_run
from qac.util import atomic_write_json
from qac.viz import image_grid, save_png


@dataclass(frozen=True)
class DemoConfig:
    """Demo settings; the defaults take a few minutes on 2 CPU cores."""

    seed: int = 0
    steps: int = 1500
    batch_size: int = 64
    code_dim: int = 8
    levels: int = 2
    ste: SteMode = DEFAULT_STE
    solver: str = "ipndm"
    afs: bool = True
    nfe: tuple[int, ...] = (3, 5, 8, 20)
    num_eval: int = 1000
    device: str = "auto"
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def run_demo(out: str | Path, cfg: DemoConfig = DemoConfig()) -> dict[str, Any]:
    """Train, sample and report; returns the results dict also written to ``results.json``."""
    out = Path(out)
    if (out / "results.json").exists() or (out / "qac" / "checkpoint").exists():
        raise QACError(f"{out} already holds a demo; choose another --out or delete it")
    if not cfg.nfe or min(cfg.nfe) < 1:
        raise QACError("demo NFE list must contain positive integers")
    t0 = time.perf_counter()
    data = open_dataset("digits")
    runs: dict[str, LoadedRun] = {}
    timings: dict[str, float] = {}
    for name, cond in (("baseline", "none"), ("qac", "qac")):
        tcfg = TrainConfig(data="digits", model=ModelConfig(cond=cond, code_dim=cfg.code_dim, levels=cfg.levels,
                                                                 ste=cfg.ste),
                           steps=cfg.steps, batch_size=cfg.batch_size, seed=cfg.seed, device=cfg.device,
                           lr_warmup_steps=min(200, cfg.steps // 5), grid_every=cfg.steps,
                           snapshot_every=cfg.steps, log_every=max(1, cfg.steps // 50))
        summary = train(tcfg, out / name, progress=cfg.progress, data=data)
        timings[f"train_{name}_s"] = summary.seconds
        runs[name] = load_run(out / name, device=cfg.device)
    reference = data.as_float()
    # what real digits score: num_eval training digits (a seeded subset) against the whole set
    subset = torch.randperm(len(reference), generator=torch.Generator().manual_seed(cfg.seed))[:cfg.num_eval]
    results: dict[str, Any] = {
        "config": asdict(cfg), "metric": "proxy_pixel_fd (pixel-space Frechet distance vs the training digits; "
        "a proxy, not FID)", "data_floor": proxy_pixel_fd(reference[subset], reference, size=8).value,
        "params": {n: param_counts(r.model) for n, r in runs.items()}, "rows": []}
    seeds = list(range(cfg.num_eval))
    rows_pics = []
    for nfe in cfg.nfe:
        row: dict[str, Any] = {"nfe": nfe}
        pics = []
        for name, run in runs.items():
            res = generate(run.model, seeds, code_weights=run.code_weights(), solver=cfg.solver, nfe=nfe,
                           afs=cfg.afs)
            row[name] = proxy_pixel_fd(res.samples, reference, size=8).value
            pics.append(image_grid(res.samples[:32], nrow=8, scale=4))
        row["qac_over_baseline"] = row["qac"] / max(row["baseline"], 1e-12)
        results["rows"].append(row)
        rows_pics.append((f"NFE {nfe}", pics))
    out.mkdir(parents=True, exist_ok=True)
    save_png(_labelled_table(rows_pics, ["baseline", "QAC"]), out / "samples.png")
    save_png(_code_rows(runs["qac"], cfg), out / "codes.png")
    results["codes"] = runs["qac"].code_weights().stats()
    results["plots"] = _plots(out, runs)
    timings["total_s"] = time.perf_counter() - t0
    results["timings"] = timings
    atomic_write_json(out / "results.json", results)
    (out / "report.md").write_text(_report_md(results))
    return results


def _labelled_table(rows: list[tuple[str, list[Image.Image]]], columns: list[str]) -> Image.Image:
    """Paste picture cells into a table with a header row and a label column."""
    cell_w = max(p.width for _, pics in rows for p in pics)
    cell_h = max(p.height for _, pics in rows for p in pics)
    left, top, gap = 70, 24, 8
    canvas = Image.new("RGB", (left + len(columns) * (cell_w + gap), top + len(rows) * (cell_h + gap)), "white")
    draw = ImageDraw.Draw(canvas)
    for j, title in enumerate(columns):
        draw.text((left + j * (cell_w + gap) + cell_w // 2 - 3 * len(title), 6), title, fill="black")
    for i, (label, pics) in enumerate(rows):
        y = top + i * (cell_h + gap)
        draw.text((6, y + cell_h // 2 - 6), label, fill="black")
        for j, pic in enumerate(pics):
            canvas.paste(pic.convert("RGB"), (left + j * (cell_w + gap), y))
    return canvas


def _code_rows(run: LoadedRun, cfg: DemoConfig, codes: int = 8, per_code: int = 10) -> Image.Image:
    """Rows of samples that share one code (the most frequent codes): what each code has learned."""
    top_idx, _ = run.code_weights().topk(codes)
    rows = []
    for k, idx in enumerate(top_idx.tolist()):
        seeds = list(range(10_000 + k * per_code, 10_000 + (k + 1) * per_code))
        res = generate(run.model, seeds, indices=torch.tensor(idx), solver="heun", steps=10)
        rows.append((f"code {idx}", [image_grid(res.samples, nrow=per_code, scale=4)]))
    return _labelled_table(rows, ["samples sharing one code (Heun, 19 NFE)"])


def _plots(out: Path, runs: dict[str, LoadedRun]) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, run in runs.items():
        stats = [json.loads(line) for line in (run.path / "stats.jsonl").read_text().splitlines()]
        ax.plot([s["step"] for s in stats], [s["loss"] for s in stats], label=name)
    ax.set(xlabel="step", ylabel="loss (per element)", yscale="log", title="training loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "losses.png", dpi=110)
    plt.close(fig)
    w = runs["qac"].code_weights().probs().cpu()
    w = torch.sort(w[w > 0], descending=True).values
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(range(len(w)), w.numpy(), width=1.0)
    ax.set(xlabel="code (sorted by weight)", ylabel="sampling probability",
           title=f"online code weights: {len(w)} codes in use")
    fig.tight_layout()
    fig.savefig(out / "code_usage.png", dpi=110)
    plt.close(fig)
    return ["losses.png", "code_usage.png"]


def _report_md(r: dict[str, Any]) -> str:
    c = r["config"]
    lines = [
        "# qac demo: baseline vs QAC on scikit-learn digits (8x8)", "",
        f"Both models: `digits` U-Net preset, EDM formulation, {c['steps']} steps at batch {c['batch_size']}, "
        f"seed {c['seed']}. QAC: L = {c['levels']}, d = {c['code_dim']} "
        f"(codebook {c['levels'] ** c['code_dim']}), {c['ste']} straight-through gradient, online code weights.",
        f"Sampler: `{c['solver']}`{' with AFS' if c['afs'] else ''}, polynomial schedule (rho = 7), "
        f"{c['num_eval']} samples, seeds 0-{c['num_eval'] - 1}.", "",
        f"Metric: {r['metric']}. Lower is better; {c['num_eval']} real training digits score "
        f"{r['data_floor']:.3f} (the floor).", "",
        "| NFE | baseline | QAC | QAC / baseline |", "|---:|---:|---:|---:|",
    ]
    for row in r["rows"]:
        lines.append(f"| {row['nfe']} | {row['baseline']:.3f} | {row['qac']:.3f} | {row['qac_over_baseline']:.2f} |")
    p = r["params"]["qac"]
    lines += ["", f"QAC parameters: denoiser {p['denoiser']:,} (code embedding {p['code_embedding']:,}), encoder "
              f"{p['encoder']:,} ({100 * p['encoder_over_denoiser']:.1f}% of the denoiser).",
              f"Codes in use: {int(r['codes']['used'])} of {int(r['codes']['codebook'])}, perplexity "
              f"{r['codes']['perplexity']:.1f}.", "",
              "![samples](samples.png)", "", "![codes](codes.png)", ""]
    for plot in r["plots"]:
        lines += [f"![{Path(plot).stem}]({plot})", ""]
    t = r["timings"]
    lines += ["", f"Time: {t['total_s']:.0f} s in all (training {t['train_baseline_s']:.0f} s + "
              f"{t['train_qac_s']:.0f} s).", ""]
    return "\n".join(lines)
