"""Sampler overhead: (sampler wall time) / (NFE x one denoiser call), per solver. Target <= 1.03.

The denoiser is the real thing at small size: the ``tiny`` U-Net preset (3x32x32) with EDM preconditioning
and a bound QAC code (:func:`qac.sampling.generate.make_denoise`), batch 64, float32 network, float64 solver state.
``--net conv`` swaps in a 3-layer conv net whose calls are ~100x cheaper, which exposes the solvers' own
arithmetic. Run: ``PYTHONPATH=src python benchmarks/sampler_overhead.py [--net unet|conv] [--threads 1]``.
Results (before/after the per-grid coefficient plans): docs/solvers.md, "Sampler overhead".
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from qac.conditions import index_to_codes
from qac.sampling import SOLVERS, sample
from qac.sampling.generate import make_denoise
from qac.train import ModelConfig, build_model


class TinyConvNet(nn.Module):
    """A few 3x3 convs; a call at batch 64 takes a few ms on one CPU core."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.SiLU(),
                                  nn.Conv2d(width, width, 3, padding=1), nn.SiLU(),
                                  nn.Conv2d(width, 3, 3, padding=1))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        c_skip = 1.0 / (sigma**2 + 1.0)  # EDM-like wrapper so the denoiser is a function of sigma
        return (c_skip * x + self.body(x.float())).to(x.dtype)


def _network(kind: str, batch: int):
    torch.manual_seed(0)
    if kind == "conv":
        return TinyConvNet().eval()
    model = build_model(ModelConfig(arch="tiny", cond="qac", code_dim=12), "image", (3, 32, 32)).eval()
    return make_denoise(model, index_to_codes(torch.arange(batch) % 4096, 2, 12))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nfe", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--net", choices=["unet", "conv"], default="unet")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net = _network(args.net, args.batch)
    noise = torch.randn(args.batch, 3, 32, 32)

    spent = [0.0]

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        t = time.perf_counter()
        out = net(x, sigma)
        spent[0] += time.perf_counter() - t
        return out

    # The machine is shared, so the call time is measured inside the same run (the sum of the time spent
    # in the NFE denoiser calls): ratio = sampler wall time / (NFE x mean call time of that run).
    with torch.no_grad():
        denoise(noise.double(), torch.tensor(1.0, dtype=torch.float64))
        print(f"net={args.net}, batch {args.batch}, {args.threads} thread(s), NFE {args.nfe}")
        print(f"{'solver':<16}{'NFE':>5}{'ms/call':>9}{'ratio':>8}")
        for name, entry in SOLVERS.items():
            opts = {"rtol": 1e-3, "atol": 1e-3} if name == "rk45" else {}
            kw = {"steps": 4} if entry.nfe is None else {"nfe": args.nfe}
            ratios, per_call = [], []
            for r in range(args.repeats):
                gen = torch.Generator().manual_seed(r) if entry.stochastic else None
                spent[0] = 0.0
                t = time.perf_counter()
                res = sample(denoise, noise, solver=name, generator=gen, **kw, **opts)
                wall = time.perf_counter() - t
                ratios.append(wall / spent[0])
                per_call.append(spent[0] / res.nfe * 1e3)
            print(f"{name:<16}{res.nfe:>5}{statistics.median(per_call):>9.2f}{statistics.median(ratios):>8.3f}")


if __name__ == "__main__":
    main()
