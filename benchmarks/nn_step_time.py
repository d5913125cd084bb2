"""Measure one QAC training step (encoder + FSQ + backbone, forward + backward + Adam) per U-Net preset.

Usage: ``PYTHONPATH=src python benchmarks/nn_step_time.py --threads 2 --batch 64 digits digits16 tiny``
Prints parameter counts and the median step time in milliseconds.
"""

from __future__ import annotations

import argparse
import time

import torch

from qac.conditions import build_encoder, code_to_input, fsq_quantize
from qac.nn import MLPConfig, build_backbone, count_params, unet_preset


def step_time(cfg, code_dim: int, batch: int, steps: int) -> tuple[int, int, float]:
    net, enc = build_backbone(cfg), build_encoder(cfg, code_dim)
    opt = torch.optim.Adam(list(net.parameters()) + list(enc.parameters()), lr=1e-4)
    if isinstance(cfg, MLPConfig):
        x0 = torch.randn(batch, cfg.dim)
    else:
        x0 = torch.randn(batch, cfg.in_channels, cfg.img_resolution, cfg.img_resolution)
    times = []
    for _ in range(steps + 2):
        t0 = time.perf_counter()
        y_q = fsq_quantize(enc(x0), 2)
        out = net(x0 + torch.randn_like(x0), torch.randn(batch), code_to_input(y_q, 2))
        loss = (out - x0).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    times = sorted(times[2:])
    return count_params(net), count_params(enc), 1000 * times[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("presets", nargs="*", default=["digits", "digits16", "mnist", "tiny", "mlp"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--code-dim", type=int, default=12)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for name in args.presets:
        d = args.code_dim
        cfg = MLPConfig(code_dim=d) if name == "mlp" else unet_preset(name, code_dim=d)
        n_net, n_enc, ms = step_time(cfg, args.code_dim, args.batch, args.steps)
        print(f"{name:10s} denoiser {n_net:>10,d}  encoder {n_enc:>8,d}  "
              f"step {ms:8.1f} ms  (batch {args.batch}, {args.threads} threads)")


if __name__ == "__main__":
    main()
