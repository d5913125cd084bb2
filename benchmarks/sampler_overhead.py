"""Sampler overhead: (sampler wall time) / (NFE x one denoiser call), per solver. Target <= 1.03.

The denoiser is the real thing at small size: the ``tiny`` U-Net preset (3x32x32) with EDM preconditioning
and a bound QAC code (:func:`qac.sampling.generate.make_denoise`), batch 64, float32 network, float64 solver state.
``--net conv`` swaps in a 3-layer conv net (~40 ms per call on one idle core), which exposes the solvers' own
arithmetic. Run: ``PYTHONPATH=src python benchmarks/sampler_overhead.py [--net unet|conv] [--repeats 7]``;
writes ``docs/results/sampler_overhead_<net>.md`` (``--out``).

Method (the machine may be shared, so the call time is measured inside each run and the runs are interleaved):

- one run = ``sample(..., nfe=NFE)``; its ratio = run wall time / (sum of the wall time spent inside its NFE
  network calls), i.e. wall / (NFE x the mean call time *of that run*). The CPU-time ratio is the same with
  ``time.thread_time`` (time the process spent waiting for a core is then not counted: robust to load).
- every repeat runs all solvers once, in an order rotated by one per repeat, so each solver sees the same mix
  of load; one warm-up round first (not recorded: imports, allocator, the per-grid coefficient caches, which
  any second batch on the same grid also finds filled).
- reported: the median over repeats of each ratio, and the median over repeats of (ratio - Euler's ratio in the
  same repeat): Euler does one pass over the state per step, so this isolates each solver's extra work.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from qac.conditions import index_to_codes
from qac.sampling import SOLVERS, sample
from qac.sampling.generate import make_denoise
from qac.train import ModelConfig, build_model


class TinyConvNet(nn.Module):
    """A few 3x3 convs; a call at batch 64 takes ~40 ms on one CPU core."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.SiLU(),
                                  nn.Conv2d(width, width, 3, padding=1), nn.SiLU(),
                                  nn.Conv2d(width, 3, 3, padding=1))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        c_skip = 1.0 / (sigma**2 + 1.0)  # EDM-like wrapper so the denoiser is a function of sigma
        return (c_skip * x + self.body(x.float())).to(x.dtype)


def _network(kind: str, batch: int, width: int = 16):
    torch.manual_seed(0)
    if kind == "conv":
        return TinyConvNet(width).eval()
    model = build_model(ModelConfig(arch="tiny", cond="qac", code_dim=12), "image", (3, 32, 32)).eval()
    return make_denoise(model, index_to_codes(torch.arange(batch) % 4096, 2, 12))


class _Timed:
    """The denoiser, with the wall and CPU time spent inside it summed."""

    def __init__(self, net) -> None:
        self.net, self.wall, self.cpu = net, 0.0, 0.0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        w, c = time.perf_counter(), time.thread_time()
        out = self.net(x, sigma)
        self.wall += time.perf_counter() - w
        self.cpu += time.thread_time() - c
        return out


def _run(timed: _Timed, noise: torch.Tensor, name: str, nfe: int, seed: int) -> tuple[float, float, float, int]:
    entry = SOLVERS[name]
    opts = {"rtol": 1e-3, "atol": 1e-3} if name == "rk45" else {}
    kw = {"steps": 4} if entry.nfe is None else {"nfe": nfe}
    gen = torch.Generator().manual_seed(seed) if entry.stochastic else None
    timed.wall = timed.cpu = 0.0
    w, c = time.perf_counter(), time.thread_time()
    res = sample(timed, noise, solver=name, generator=gen, **kw, **opts)
    wall, cpu = time.perf_counter() - w, time.thread_time() - c
    return wall / timed.wall, cpu / timed.cpu, timed.wall / res.nfe * 1e3, res.nfe


def _median_ms(fn, n: int = 21) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nfe", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--net", choices=["unet", "conv"], default="unet")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--conv-width", type=int, default=16,
                    help="channels of the conv net (16: ~25-40 ms per call here; 26: ~40 ms, the issue's 'cheap "
                         "network'); results go to sampler_overhead_conv<width>.md unless 16")
    ap.add_argument("--solvers", default=",".join(SOLVERS), help="comma-separated (euler is always added)")
    ap.add_argument("--out", default="docs/results", help="folder for sampler_overhead_<net>.md ('' = none)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = ["euler"] + [n for n in args.solvers.split(",") if n and n != "euler"]
    timed = _Timed(_network(args.net, args.batch, args.conv_width))
    noise = torch.randn(args.batch, 3, 32, 32)
    rows: dict[str, list[tuple[float, float, float, int]]] = {n: [] for n in names}
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    with torch.no_grad():
        for n in names:  # warm-up round
            _run(timed, noise, n, args.nfe, 0)
        for r in range(args.repeats):
            order = names[r % len(names):] + names[:r % len(names)]
            for n in order:
                rows[n].append(_run(timed, noise, n, args.nfe, r))
        state = noise.double()
        pass_ms = _median_ms(lambda: torch.lerp(state, state, 0.5))
        gen = torch.Generator().manual_seed(0)
        draw_ms = _median_ms(lambda: torch.randn(noise.shape, generator=gen))
    minutes, load1 = (time.perf_counter() - t0) / 60, os.getloadavg()[0]

    def med(n: str, k: int) -> float:
        return statistics.median(v[k] for v in rows[n])

    lines = ["| solver | NFE | ms/call | wall ratio | CPU ratio | wall ratio - Euler's |", "|---|---|---|---|---|---|"]
    for n in names:
        excess = statistics.median(a[0] - b[0] for a, b in zip(rows[n], rows["euler"]))
        lines.append(f"| {n} | {rows[n][0][3]} | {med(n, 2):.1f} | {med(n, 0):.3f} | {med(n, 1):.3f} | "
                     f"{excess:+.3f} |")
    cmd = "OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/sampler_overhead.py " + " ".join(sys.argv[1:])
    net = f"{args.net}, width {args.conv_width}" if args.net == "conv" else args.net
    head = [f"# Sampler overhead ({net} network)", "", f"`{cmd}`", "",
            f"Batch {args.batch} of 3x32x32, float64 state, {args.threads} thread(s), NFE {args.nfe} (rk45: 4 steps "
            f"at rtol = atol = 1e-3), {args.repeats} interleaved repeats after one warm-up round, medians; "
            f"{minutes:.1f} min, load average {load0:.1f} at the start and {load1:.1f} at the end on "
            f"{os.cpu_count()} cores. Method: the docstring of benchmarks/sampler_overhead.py. "
            "Target: ratio <= 1.03.", "",
            f"For scale (medians of 21, after the runs): one pass over the state (a float64 `lerp`) {pass_ms:.2f} ms, "
            f"one float32 Gaussian draw of the state's size {draw_ms:.2f} ms (Euler-Maruyama makes one per step), "
            f"one network call {med('euler', 2):.1f} ms.", ""]
    text = "\n".join(head + lines) + "\n"
    print(text)
    if args.out:
        width = f"{args.conv_width}" if args.net == "conv" and args.conv_width != 16 else ""
        path = Path(args.out) / f"sampler_overhead_{args.net}{width}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
