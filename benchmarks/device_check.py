"""One short check of the accelerator paths, prepared for a session that is lent a GPU machine.

Every stage runs even when an earlier one fails; each records ``ok``, its wall time and what it measured, into
``$OUT/device_check.json`` (and ``device_check.md``), so one device call answers everything:

1. ``env``: torch, CUDA, device name.
2. ``train``: ``qac train`` on digits in fp32, with ``--amp`` bf16 and fp16 (dynamic loss scaling), and with
   ``--compile``: exit code, final loss finite, seconds per step.
3. ``resume``: the fp32 run trained in one go vs half + ``--resume``: largest weight difference (bitwise on
   the CPU; on CUDA nondeterministic kernels may leave a tiny difference, which is reported, not failed).
4. ``sampling``: every solver of the registry on the device vs the CPU from the same seeds (NFE 10, float64
   state on both): largest difference of the samples and time per solver.
5. ``torchrun``: ``qac train`` under ``torch.distributed.run`` with one process per device (NCCL on CUDA,
   gloo on the CPU).
6. ``edit``: ``qac edit --task sr2`` on the device.

On the device machine (torch, click, safetensors, scipy, scikit-learn, tqdm and pillow are in its image)::

    PYTHONPATH=src PYTHONUNBUFFERED=1 python3 benchmarks/device_check.py --out $OUT   # ~3-5 min on an H200

Here, as a smoke test of the script itself: ``... benchmarks/device_check.py --device cpu --steps 4 --quick``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _qac(*args: object, torchrun: bool = False, timeout: int = 600) -> subprocess.CompletedProcess:
    head = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", "--master_addr=127.0.0.1",
            f"--master_port={_free_port()}", "-m", "qac"] if torchrun else [sys.executable, "-m", "qac"]
    res = subprocess.run([*head, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"exit {res.returncode}: {(res.stderr or res.stdout).strip()[-600:]}")
    return res


def _last_loss(run: Path) -> float:
    lines = (run / "stats.jsonl").read_text().splitlines()
    return float(json.loads(lines[-1])["loss"])


def _max_diff(a: Path, b: Path) -> float:
    wa, wb = (load_file(str(r / "checkpoint" / "model.safetensors")) for r in (a, b))
    return max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa)


class Checks:
    """Runs named stages, keeping going after failures, and writes the report."""

    def __init__(self, out: Path) -> None:
        self.out, self.rows = out, {}

    def stage(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        t0 = time.perf_counter()
        try:
            row = {"ok": True, **fn()}
        except Exception as exc:  # noqa: BLE001 (a report of every stage is the point)
            row = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[-800:], "trace": traceback.format_exc()[-1500:]}
        row["seconds"] = round(time.perf_counter() - t0, 2)
        self.rows[name] = row
        print(f"[{'ok' if row['ok'] else 'FAIL'}] {name} ({row['seconds']} s): "
              f"{ {k: v for k, v in row.items() if k not in ('ok', 'trace', 'seconds')} }", flush=True)
        return row if row["ok"] else None

    def write(self) -> None:
        (self.out / "device_check.json").write_text(json.dumps(self.rows, indent=1))
        lines = ["| stage | ok | seconds | result |", "|---|---|---|---|"]
        for name, row in self.rows.items():
            detail = {k: v for k, v in row.items() if k not in ("ok", "trace", "seconds")}
            lines.append(f"| {name} | {row['ok']} | {row['seconds']} | {json.dumps(detail)[:300]} |")
        (self.out / "device_check.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT", "runs/device_check"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=60, help="training steps of each run")
    ap.add_argument("--quick", action="store_true", help="skip AMP and --compile (for a CPU smoke test)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dev, steps = args.device, args.steps
    checks = Checks(out)
    common = ("--data", "digits", "--batch", "64", "--device", dev, "--log-every", "1", "--grid-every", "100000",
              "--no-progress")

    def env() -> dict[str, Any]:
        info: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
        if torch.cuda.is_available():
            info.update(name=torch.cuda.get_device_name(0), capability=list(torch.cuda.get_device_capability(0)))
        return info

    def train(name: str, *extra: object) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            t0 = time.perf_counter()
            _qac("train", *common, "--steps", steps, "--snapshot-every", steps, "--out", out / name, *extra)
            loss = _last_loss(out / name)
            if not math.isfinite(loss):
                raise RuntimeError(f"final loss {loss}")
            return {"final_loss": round(loss, 4), "s_per_step": round((time.perf_counter() - t0) / steps, 4)}
        return run

    checks.stage("env", env)
    fp32 = checks.stage("train_fp32", train("fp32"))
    if not args.quick:
        checks.stage("train_amp_bf16", train("bf16", "--amp", "--amp-dtype", "bf16"))
        checks.stage("train_amp_fp16", train("fp16", "--amp", "--amp-dtype", "fp16"))
        checks.stage("train_compile", train("compiled", "--compile"))

    def resume() -> dict[str, Any]:
        half = max(1, steps // 2)
        _qac("train", *common, "--steps", half, "--snapshot-every", half, "--out", out / "halves")
        _qac("train", *common, "--steps", steps, "--snapshot-every", steps, "--out", out / "halves", "--resume")
        diff = _max_diff(out / "fp32", out / "halves")
        if dev == "cpu" and diff != 0:
            raise RuntimeError(f"resume is not bitwise on the CPU: {diff}")
        return {"max_weight_diff": diff}

    def sampling() -> dict[str, Any]:
        from qac.sampling import SOLVERS
        from qac.sampling.generate import generate
        from qac.train.run import load_run

        seeds, res = list(range(32)), {}
        runs = {d: load_run(out / "fp32", device=d) for d in ("cpu", dev)}
        for name, entry in SOLVERS.items():
            kw: dict[str, Any] = {"steps": 4, "rtol": 1e-3, "atol": 1e-3} if entry.nfe is None else {"nfe": 10}
            outs, secs = {}, 0.0
            for d, run in runs.items():
                t0 = time.perf_counter()
                outs[d] = generate(run.model, seeds, code_weights=run.code_weights(), solver=name, **kw).samples
                if d == dev:
                    secs = time.perf_counter() - t0
            res[name] = {"max_diff": float((outs["cpu"] - outs[dev].cpu()).abs().max()), "s": round(secs, 3)}
        return {"solvers": res}

    def torchrun() -> dict[str, Any]:
        _qac("train", *common, "--steps", 4, "--snapshot-every", 4, "--out", out / "ddp", torchrun=True)
        return {"final_loss": round(_last_loss(out / "ddp"), 4)}

    def edit() -> dict[str, Any]:
        _qac("edit", "--run", out / "fp32", "--task", "sr2", "--data", "digits", "--num", "4", "--seeds", "0-1",
             "--steps", "10", "--device", dev, "--out", out / "edit")
        return {"files": sorted(p.name for p in (out / "edit").iterdir())}

    if fp32 is not None:
        checks.stage("resume", resume)
        checks.stage("sampling", sampling)
        checks.stage("edit", edit)
    checks.stage("torchrun", torchrun)
    checks.write()
    print(f"report: {out / 'device_check.md'}")
    return checks.rows


if __name__ == "__main__":
    rows = main()
    sys.exit(0 if all(r["ok"] for r in rows.values()) else 1)
