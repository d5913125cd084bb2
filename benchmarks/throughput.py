"""Training and sampling throughput (images/s) of the ``cifar10-qac`` recipe's network (the cifar10 preset,
55.7M + QAC) on this machine: 1 and 2 CPU threads (``OMP_NUM_THREADS`` set per setting, one fresh process
each), with and without gradient accumulation and ``channels_last``; on CUDA (when present) also with bf16 /
fp16 autocast. Each measurement is tiny (one warm-up and ``--steps`` timed steps of batch ``--batch``) so that
the whole run fits a few minutes on a shared CPU; the numbers are for comparing settings, not for planning.

Run: ``PYTHONPATH=src python benchmarks/throughput.py [--steps 1] [--batch 4]``; writes
``docs/results/throughput.json`` and ``docs/results/throughput.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "docs" / "results"


def measure(setting: dict) -> dict:
    """Child process: one setting -> images/s."""
    import torch

    from qac.train.recipes import resolve_recipe
    from qac.train.throughput import measure_sampling, measure_train

    torch.manual_seed(0)
    cfg = resolve_recipe("cifar10-qac").replace(batch_size=setting["batch"], batch_gpu=setting.get("batch_gpu"),
                                                channels_last=setting.get("channels_last", False),
                                                amp=setting.get("amp") is not None,
                                                amp_dtype=setting.get("amp") or "bf16")
    dev = setting["device"]
    if setting["kind"] == "train":
        img_s = measure_train(cfg, (3, 32, 32), steps=setting["steps"], device=dev)
    else:
        img_s = measure_sampling(cfg, (3, 32, 32), batch=setting["batch"], nfe=setting["nfe"], device=dev,
                                 amp=setting.get("amp") is not None)
    return {**setting, "img_per_s": img_s, "torch_threads": torch.get_num_threads()}


def settings(args: argparse.Namespace, cuda: bool) -> list[dict]:
    b = args.batch
    out = []
    for threads in (1, 2):
        base = {"device": "cpu", "threads": threads, "batch": b, "steps": args.steps}
        out += [{**base, "kind": "train"},
                {**base, "kind": "train", "batch_gpu": b // 2},
                {**base, "kind": "train", "channels_last": True},
                {**base, "kind": "sample", "nfe": args.nfe}]
    if cuda:
        base = {"device": "cuda", "threads": 2, "batch": 128, "steps": 5}
        for amp in (None, "bf16", "fp16"):
            out += [{**base, "kind": "train", "amp": amp}, {**base, "kind": "train", "amp": amp, "batch_gpu": 64},
                    {**base, "kind": "train", "amp": amp, "channels_last": True},
                    {**base, "kind": "sample", "nfe": 4, "amp": amp}]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1, help="timed training steps per setting (after 1 warm-up)")
    ap.add_argument("--batch", type=int, default=4, help="global batch on CPU (accumulation: 2 rounds of half)")
    ap.add_argument("--nfe", type=int, default=2, help="Euler NFE of the sampling measurement")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(measure(json.loads(args.one))))
        return
    import torch

    rows = []
    t0 = time.perf_counter()
    for s in settings(args, torch.cuda.is_available()):
        env = dict(os.environ, OMP_NUM_THREADS=str(s["threads"]), MKL_NUM_THREADS=str(s["threads"]))
        res = subprocess.run([sys.executable, __file__, "--one", json.dumps(s)], capture_output=True, text=True,
                             env=env, check=True)
        row = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{row['device']} threads={row['threads']} {row['kind']:6s} batch={row['batch']} "
              f"batch_gpu={row.get('batch_gpu')} channels_last={row.get('channels_last', False)} "
              f"amp={row.get('amp')}: {row['img_per_s']:.3f} img/s", flush=True)
    meta = {"command": "PYTHONPATH=src python benchmarks/throughput.py " + " ".join(sys.argv[1:]),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs (shared)",
            "torch": torch.__version__, "cuda": torch.cuda.is_available(), "seconds": round(time.perf_counter() - t0)}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "throughput.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = ["# Throughput of the cifar10-qac network (images/s)", "",
             f"Command: `{meta['command']}` ({meta['machine']}; torch {meta['torch']}; "
             f"CUDA: {'yes' if meta['cuda'] else 'no — CUDA and autocast rows not measured'}; "
             f"{meta['seconds']} s). One warm-up step, then the timed steps; a fresh process per row with "
             "OMP_NUM_THREADS = threads. Tiny measurements on a CPU shared with other jobs: compare rows, do "
             "not plan with them.", "",
             "| device | threads | what | batch | batch_gpu | channels_last | autocast | img/s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        what = "train step" if r["kind"] == "train" else f"sample (Euler, NFE {r['nfe']})"
        lines.append(f"| {r['device']} | {r['threads']} | {what} | {r['batch']} | {r.get('batch_gpu') or '—'} | "
                     f"{'yes' if r.get('channels_last') else 'no'} | {r.get('amp') or 'off'} | "
                     f"{r['img_per_s']:.3f} |")
    (OUT / "throughput.md").write_text("\n".join(lines) + "\n")
    print(f"-> {OUT / 'throughput.md'}")


if __name__ == "__main__":
    main()
