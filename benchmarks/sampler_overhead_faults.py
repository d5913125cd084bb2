"""Where a solver's time outside the network goes: per step, wall and CPU ms outside the calls and minor page faults
inside and outside them, with the conv network of ``sampler_overhead.py`` and with a free one.

The free network returns one fixed tensor (no allocations of its own), so every fault outside it comes from the
solver's state-sized allocations; with the conv network its ~4 MB activations change how glibc reuses freed
blocks. Run: ``OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/sampler_overhead_faults.py``; writes
``docs/results/sampler_overhead_faults.md`` (``--out ''``: print only). Medians over ``--repeats`` interleaved
runs after one warm-up round, NFE 20, batch 64 of 3x32x32, float64 state.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from sampler_overhead import TinyConvNet

from qac.sampling import sample


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


class _Probe:
    """The denoiser, with wall time, CPU time and minor faults inside its calls summed."""

    def __init__(self, net) -> None:
        self.net, self.wall, self.cpu, self.faults = net, 0.0, 0.0, 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        f, w, c = _faults(), time.perf_counter(), time.thread_time()
        out = self.net(x, sigma)
        self.wall += time.perf_counter() - w
        self.cpu += time.thread_time() - c
        self.faults += _faults() - f
        return out


def _run(net, noise: torch.Tensor, name: str, nfe: int) -> tuple[float, float, float, float]:
    probe = _Probe(net)
    f, w, c = _faults(), time.perf_counter(), time.thread_time()
    res = sample(probe, noise, solver=name, nfe=nfe)
    wall, cpu, faults = time.perf_counter() - w, time.thread_time() - c, _faults() - f
    n = res.nfe
    return ((wall - probe.wall) / n * 1e3, (cpu - probe.cpu) / n * 1e3, (faults - probe.faults) / n,
            probe.faults / n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--solvers", default="euler,dpmpp_3m,unipc,ipndm")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--nfe", type=int, default=20)
    ap.add_argument("--out", default="docs/results", help="folder for sampler_overhead_faults.md ('' = none)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    noise = torch.randn(64, 3, 32, 32)
    fixed = torch.randn(64, 3, 32, 32, dtype=torch.float64)
    nets = {"conv": TinyConvNet().eval(), "free": lambda x, s: fixed}
    names = args.solvers.split(",")
    rows: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
    with torch.no_grad():
        for r in range(args.repeats + 1):
            for kind, net in nets.items():
                for n in names[r % len(names):] + names[:r % len(names)]:
                    out = _run(net, noise, n, args.nfe)
                    if r:
                        rows.setdefault((kind, n), []).append(out)
    lines = ["| network | solver | wall ms/step outside | CPU ms/step outside | faults/step outside | "
             "faults per call inside |", "|---|---|---|---|---|---|"]
    for (kind, n), v in rows.items():
        med = [statistics.median(x[k] for x in v) for k in range(4)]
        lines.append(f"| {kind} | {n} | {med[0]:.3f} | {med[1]:.3f} | {med[2]:.0f} | {med[3]:.0f} |")
    cmd = "OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/sampler_overhead_faults.py " + " ".join(sys.argv[1:])
    text = "\n".join(["# Sampler overhead: time and page faults outside the network", "", f"`{cmd}`", "",
                      f"NFE {args.nfe}, {args.repeats} interleaved repeats, medians; load average "
                      f"{os.getloadavg()[0]:.1f} at the end on {os.cpu_count()} cores. Method: the docstring of "
                      "benchmarks/sampler_overhead_faults.py.", ""] + lines) + "\n"
    print(text)
    if args.out:
        path = Path(args.out) / "sampler_overhead_faults.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
