"""Zero-shot editing benchmark (paper §4.4, Algorithm 2): QAC vs a baseline trained with the same budget.

Two held-out sets, both built here without downloads:

* digits16 — scikit-learn's digits at 16x16; a seeded 80/20 split (models train on the 80 %);
* rgb16 — 16x16 RGB patches of scikit-learn's two bundled sample photos (china, flower) at quarter size;
  test patches are seeded random cells of the 16-pixel grid (half from each photo), training patches
  (stride 4) are every patch that overlaps no test cell, so no test pixel was seen in training.
  (32x32 patches with the `tiny` U-Net were 3x too slow for the CPU budget of this benchmark.)

Per set: a QAC model and a baseline with the same preset, steps, batch and seed. Tasks: SR x2/x4, box and
random (50 %) inpainting, colorization (RGB only); Algorithm 2 with N = 40 (Karras schedule), 3 seeds.
Writes docs/results/editing.md, editing.json and editing_<set>.png.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/editing.py [--work /tmp/qac-edit-bench] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from qac.data import open_dataset
from qac.edit import edit, make_degradation
from qac.edit.metrics import mean_std, psnr, ssim
from qac.train import ModelConfig, TrainConfig, train
from qac.train.run import load_run
from qac.viz import image_grid, save_png

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results"
TASKS = {"digits16": ["sr2", "sr4", "inpaint-box", "inpaint-random"],
         "rgb16": ["sr2", "sr4", "colorize", "inpaint-box", "inpaint-random"]}
PRESET = {"digits16": "digits16", "rgb16": "digits16"}


def build_sets(work: Path, num_test: int) -> dict[str, Path]:
    """Write train.npz / test.npz for both sets into ``work``; returns the folder of each set."""
    out = {}
    digits = open_dataset("digits16").data.permute(0, 2, 3, 1).numpy()
    perm = np.random.default_rng(0).permutation(len(digits))
    cut = int(0.8 * len(digits))
    out["digits16"] = _save_split(work / "digits16", digits[perm[:cut]], digits[perm[cut:]][:num_test])
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(0)
    train_p, test_p = [], []
    for img in load_sample_images().images:
        pil = Image.fromarray(img)
        arr = np.asarray(pil.resize((pil.width // 4, pil.height // 4), Image.LANCZOS))
        h, w = arr.shape[:2]
        tiles = [(i, j) for i in range(0, h - 15, 16) for j in range(0, w - 15, 16)]
        held = [tiles[t] for t in rng.permutation(len(tiles))[:num_test // 2]]
        test_p += [arr[i:i + 16, j:j + 16] for i, j in held]
        free = np.ones((h, w), bool)
        for i, j in held:
            free[i:i + 16, j:j + 16] = False
        train_p += [arr[i:i + 16, j:j + 16] for i in range(0, h - 15, 4) for j in range(0, w - 15, 4)
                    if free[i:i + 16, j:j + 16].all()]
    test = np.stack(test_p)
    out["rgb16"] = _save_split(work / "rgb16", np.stack(train_p), test)
    return out


def _save_split(folder: Path, train_x: np.ndarray, test_x: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "train.npz", x=train_x.astype(np.uint8))
    np.savez(folder / "test.npz", x=test_x.astype(np.uint8))
    return folder


def _train_one(job: tuple[str, str, str, int, int, float]) -> tuple[str, int, float]:
    """Train (or resume) one run for at most ``minutes``: then SIGTERM makes the loop checkpoint and return."""
    torch.set_num_threads(1)
    data, run_dir, cond, steps, batch, minutes = job
    name = Path(data).parent.name
    cfg = TrainConfig(data=data, model=ModelConfig(arch=PRESET[name], cond=cond), steps=steps, batch_size=batch,
                      xflip=name == "rgb16", device="cpu", log_every=50, snapshot_every=steps, grid_every=steps)
    resume = False
    if Path(run_dir).exists():
        try:
            done = load_run(run_dir, device="cpu").step
        except Exception:  # noqa: BLE001 - an unreadable run is retrained from scratch
            done = None
        if done == steps:
            return run_dir, steps, 0.0
        if done is None:
            shutil.rmtree(run_dir)
        resume = done is not None
    timer = threading.Timer(minutes * 60, os.kill, (os.getpid(), signal.SIGTERM))
    timer.daemon = True
    timer.start()
    t0 = time.perf_counter()
    train(cfg, run_dir, resume=resume, progress=False)
    timer.cancel()
    return run_dir, load_run(run_dir, device="cpu").step, time.perf_counter() - t0


def evaluate(set_name: str, folder: Path, runs: dict[str, Path], seeds: list[int], n: int) -> tuple[list, dict]:
    """PSNR/SSIM rows of every (task, method) and the pictures' tensors."""
    test = open_dataset(str(folder / "test.npz")).as_float()
    qac, base = load_run(runs["qac"], device="cpu").model, load_run(runs["none"], device="cpu").model
    methods = {"baseline": (base, "none"), "QAC": (qac, "adaptive")}
    rows, pics = [], {}
    for task in TASKS[set_name]:
        deg = make_degradation(task, tuple(test.shape[1:]))
        floor = deg.view(test.double()).float()
        row = {"set": set_name, "task": task, "degraded_psnr": mean_std(psnr(floor, test))[0],
               "degraded_ssim": mean_std(ssim(floor, test))[0]}
        pics[task] = {"original": test, "degraded": floor}
        for label, (model, code) in methods.items():
            res = edit(model, test, task=deg, seeds=seeds, steps=n, code=code, batch_size=256)
            per_seed = [(psnr(res.results[:, i], test), ssim(res.results[:, i], test)) for i in range(len(seeds))]
            p = torch.stack([a.mean() for a, _ in per_seed])
            s = torch.stack([b.mean() for _, b in per_seed])
            row[label] = {"psnr": mean_std(p), "ssim": mean_std(s), "kept_error_max": float(res.kept_error.max())}
            pics[task][label] = res.results[:, 0]
        if task in ("sr2", "colorize"):
            lit = edit(qac, test, task=make_degradation(task, tuple(test.shape[1:]), projection="literal"),
                       seeds=seeds[:1], steps=n, batch_size=256)
            row["QAC literal line 8"] = {"psnr": mean_std(psnr(lit.results[:, 0], test)),
                                         "ssim": mean_std(ssim(lit.results[:, 0], test))}
        rows.append(row)
        print(f"{set_name} {task}: floor {row['degraded_psnr']:.2f} baseline {row['baseline']['psnr'][0]:.2f} "
              f"QAC {row['QAC']['psnr'][0]:.2f}", flush=True)
    return rows, pics


def _evaluate_set(name: str, folder: Path, n: int) -> tuple[list, dict]:
    torch.set_num_threads(1)
    return evaluate(name, folder, {c: folder / c for c in ("qac", "none")}, [0, 1, 2], n)


def time_cost(run: Path, folder: Path, n: int, batch: int) -> dict:
    """Editing wall time vs N x (one denoiser call + one encoder call) on the same batch (best of 3)."""
    model = load_run(run, device="cpu").model
    x = open_dataset(str(folder / "test.npz")).as_float()[:batch]
    deg = make_degradation("sr2", tuple(x.shape[1:]))
    sig = torch.full((len(x),), 1.0)

    def calls() -> None:
        with torch.no_grad():
            xs = x.double()
            for _ in range(n):
                y, _ = model.encode(xs)
                model(xs, sig.double(), y)

    def edits() -> None:
        edit(model, x, task=deg, seeds=[0], steps=n, batch_size=batch)

    def best(fn) -> float:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    calls()  # warm-up
    t_calls, t_edit = best(calls), best(edits)
    return {"batch": batch, "N": n, "edit_s": t_edit, "calls_s": t_calls, "ratio": t_edit / t_calls}


def picture(pics: dict, path: Path, count: int = 4) -> None:
    """Fig. 5 style: per task ``count`` test images, columns original | degraded | baseline | QAC."""
    tiles = []
    for p in pics.values():
        for i in range(count):
            tiles += [p[k][i:i + 1].float().clamp(-1, 1) for k in ("original", "degraded", "baseline", "QAC")]
    h = tiles[0].shape[-1]
    save_png(image_grid(torch.cat(tiles), nrow=4 * count, scale=max(1, 64 // h)), path)


NOTES = """
## How to read it

* **Training history of these numbers.** The runs were trained in two calls. An earlier call of this script
  (then `--steps 800`, no time budget) was stopped with SIGTERM after 16.6 min at steps 418-455: the 2
  shared CPU cores were about 5x oversubscribed (load average about 10). The call above resumed every run
  to step 700 (the loop resumes bit for bit). That is about 23 min of wall time per model on a shared core.
* **Where QAC helps:** on rgb16 it beats the baseline on super-resolution ×2 / ×4 (+2.0 / +1.7 dB, SSIM
  +0.04 / +0.06, more than ten seed standard deviations) and random inpainting (+1.0 dB, two to four std).
  Colorization: +0.7 dB, only about one seed std (0.55 dB), so weak evidence.
* **Where QAC does not help:** on digits16 QAC ties the baseline: SR ×4 −0.18 dB, box inpainting +0.01 dB,
  random inpainting −0.33 dB, all within about one seed std, and its SSIM is no better. The +0.9 dB on
  digits16 SR ×2 is on a nearly invertible task: digits16 is the 8×8 digits upsampled, so the 2×2 averages
  almost fix the image and both models pass 50 dB. rgb16 box inpainting is a tie (−0.11 dB, std ≈ 1 dB).
* **Neither model beats the degraded input on RGB super-resolution.** The test patches are mostly smooth
  sky and walls (nearest-neighbour blocks already score 38.4 dB at ×2). These 700-step models leave faint
  grain in flat regions (visible in the picture), and that grain costs more PSNR than their added detail
  gains. QAC comes closer to the floor than the baseline, but by PSNR/SSIM both do worse here than using no
  model at all.
* **The literal line 8** returns the degraded input for super-resolution (same PSNR). For colorization it
  returns a gray image scaled by 1/‖w‖² ≈ 2.24 (the pseudo-inverse of the luminance row), which clips. This
  is why the null-space form is the default (`docs/design.md §6`).
* **Cost:** besides the N denoiser and N encoder calls, Algorithm 2 only adds the projections and
  per-seed noise. The ratio below 1 is timing noise on a shared machine: the two loops are timed
  separately, best of 3 each.
* Not measured here (CPU budget): `code="fixed"` (the degraded input's code kept for all steps), SR ×8 and
  half-image or PNG-mask inpainting; the tests check them for correctness only. The pictures show the first
  4 test patches of each set; 3 of the 4 RGB patches are nearly flat sky.
"""


def fmt(v: tuple[float, float], digits: int = 2) -> str:
    return f"{v[0]:.{digits}f} ± {v[1]:.{digits}f}"


def report(rows: list, timing: dict, meta: dict) -> str:
    lines = ["# Zero-shot editing (paper §4.4, Algorithm 2): QAC vs baseline", "",
             f"Made by `{meta['command']}` ({meta['minutes']:.0f} min on 2 shared CPU cores).", "",
             meta["scale"], "",
             "Numbers: mean ± std over the 3 seeds of the mean over the test images; PSNR in dB on [-1, 1] images "
             "(results clamped), SSIM from scikit-image (data range 2). *degraded* is the degraded input drawn as "
             "an image (blocks, gray, missing pixels mid-gray): the floor to beat.", ""]
    for metric in ("psnr", "ssim"):
        lines += [f"## {metric.upper()}", "",
                  "| set | task | degraded | baseline | QAC | QAC − baseline |",
                  "|---|---|---:|---:|---:|---:|"]
        d = 2 if metric == "psnr" else 3
        for r in rows:
            delta = r["QAC"][metric][0] - r["baseline"][metric][0]
            lines.append(f"| {r['set']} | {r['task']} | {r['degraded_' + metric]:.{d}f} | "
                         f"{fmt(r['baseline'][metric], d)} | {fmt(r['QAC'][metric], d)} | {delta:+.{d}f} |")
        lines.append("")
    lines += ["## The paper's line 8 read literally", "",
              "`x ← A⁻¹[(Az)⊙(1−Ω) + (Ax)⊙Ω]` with the non-square A of super-resolution/colorization discards x "
              "outside the range of A⁻¹, so the result is the degraded input again (1 seed, QAC):", "",
              "| set | task | degraded PSNR | literal PSNR | null-space PSNR (default) |", "|---|---|---:|---:|---:|"]
    for r in rows:
        if "QAC literal line 8" in r:
            lines.append(f"| {r['set']} | {r['task']} | {r['degraded_psnr']:.2f} | "
                         f"{r['QAC literal line 8']['psnr'][0]:.2f} | {r['QAC']['psnr'][0]:.2f} |")
    worst = max(max(r[k]["kept_error_max"] for k in ("baseline", "QAC")) for r in rows)
    lines += ["", f"Data consistency: the largest `‖(Ax − Az)⊙(1−Ω)‖₂` of any result is {worst:.1e}.", "",
              NOTES, "## Cost", "",
              f"Editing {timing['batch']} RGB 16x16 images with N = {timing['N']} (QAC, adaptive code): "
              f"{timing['edit_s']:.2f} s; N × (one encoder call + one denoiser call) on the same batch: "
              f"{timing['calls_s']:.2f} s; ratio **{timing['ratio']:.3f}** (target ≤ 1.05; best of 3 each).", "",
              "## Pictures", "", "Columns per image: original | degraded | baseline | QAC (seed 0); rows: tasks.", "",
              "![rgb16](editing_rgb16.png)", "", "![digits16](editing_digits16.png)", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/qac-edit-bench")
    ap.add_argument("--steps", type=int, default=800, help="training steps of every model")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--num-test", type=int, default=16)
    ap.add_argument("--edit-steps", type=int, default=40)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--train-minutes", type=float, default=25.0, help="time budget of each training call")
    ap.add_argument("--smoke", action="store_true", help="a 1-minute run that checks the plumbing")
    ap.add_argument("--report-only", action="store_true", help="rewrite editing.md from editing.json")
    args = ap.parse_args()
    if args.report_only:
        saved = json.loads((OUT / "editing.json").read_text())
        (OUT / "editing.md").write_text(report(saved["rows"], saved["timing"], saved["meta"]))
        return
    torch.set_num_threads(1)
    if args.smoke:
        args.steps, args.num_test, args.edit_steps, args.work = 5, 4, 3, args.work + "-smoke"
    t0 = time.perf_counter()
    work = Path(args.work)
    sets = build_sets(work, args.num_test)
    jobs = [(str(folder / "train.npz"), str(folder / cond), cond, args.steps, args.batch, args.train_minutes)
            for folder in sets.values() for cond in ("qac", "none")]
    reached = {}
    with mp.get_context("spawn").Pool(args.workers) as pool:
        for run_dir, step, secs in pool.imap_unordered(_train_one, jobs):
            reached[str(Path(run_dir).relative_to(work))] = step
            print(f"trained {run_dir} to step {step} ({secs:.0f} s this call)", flush=True)
    with mp.get_context("spawn").Pool(len(sets)) as pool:
        evals = pool.starmap(_evaluate_set, [(name, folder, args.edit_steps) for name, folder in sets.items()])
    rows = []
    for (name, _), (r, pics) in zip(sets.items(), evals):
        rows += r
        if not args.smoke:
            picture(pics, OUT / f"editing_{name}.png")
    timing = time_cost(sets["rgb16"] / "qac", sets["rgb16"], args.edit_steps, args.num_test)
    print(json.dumps(timing), flush=True)
    if args.smoke:
        return
    n_train = {k: len(open_dataset(str(f / "train.npz"))) for k, f in sets.items()}
    steps_txt = ", ".join(f"{k} {v}" for k, v in sorted(reached.items()))
    scale = (f"Scale: every model trains at batch {args.batch} from seed 0 on one CPU thread, up to {args.steps} "
             f"steps or until its time budget ({args.train_minutes:g} min per call; the loop checkpoints on SIGTERM "
             f"and a rerun resumes it). Steps reached: {steps_txt}. "
             f"(EDM formulation; QAC with L = 2, d = 8, the paper's identity straight-through gradient); "
             f"`digits16` U-Net preset for both sets; digits16: {n_train['digits16']} training digits; rgb16: "
             f"{n_train['rgb16']} training patches with x-flips. {args.num_test} test images per set, "
             f"seeds 0, 1, 2, N = {args.edit_steps}. These are minutes-scale CPU models, far from the paper's.")
    meta = {"command": " ".join(["OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/editing.py", *sys.argv[1:]]),
            "scale": scale, "steps": reached,
            "minutes": (time.perf_counter() - t0) / 60}
    (OUT / "editing.json").write_text(json.dumps({"rows": rows, "timing": timing, "meta": meta}, indent=1) + "\n")
    (OUT / "editing.md").write_text(report(rows, timing, meta))
    print(f"done in {meta['minutes']:.1f} min", flush=True)


if __name__ == "__main__":
    main()
