"""QAC training overhead: (QAC train-step time) / (baseline train-step time) on the ``tiny`` preset,
and the encoder / denoiser parameter ratio on the ``cifar10`` preset (paper: encoder ~1%).

Run: ``python benchmarks/train_overhead.py [--steps 30] [--batch 64] [--threads 1]``. Prints ratios; the
issue's targets are step-time ratio <= 1.05 and parameter ratio <= 3%.
Both models run the same training step (:func:`qac.train.loop._train_step`), interleaved, and the median
over steps is compared so that background load affects both alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from qac.data import ArrayDataset
from qac.info import describe_preset
from qac.model import build_model
from qac.nn import UNET_PRESETS
from qac.train import ModelConfig, TrainConfig
from qac.train.distributed import DistInfo
from qac.train.loop import _LossModule, _train_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--code-dim", type=int, default=12)
    ap.add_argument("--arch", default="tiny", help="U-Net preset (tiny, digits, cifar10, ...)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    p = UNET_PRESETS[args.arch]
    shape = (p.in_channels, p.img_resolution, p.img_resolution)
    images = ArrayDataset(torch.randint(0, 256, (512, *shape), dtype=torch.uint8), None, "image", "random")
    setups = {}
    for cond in ("none", "qac"):
        cfg = TrainConfig(data="random", model=ModelConfig(arch=args.arch, cond=cond, code_dim=args.code_dim),
                          batch_size=args.batch, device="cpu")
        torch.manual_seed(0)
        model = build_model(cfg.model, "image", shape)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        setups[cond] = (cfg, _LossModule(model), opt)
    times: dict[str, list[float]] = {"none": [], "qac": []}
    for step in range(args.steps + 3):
        for cond, (cfg, mod, opt) in setups.items():
            t = time.perf_counter()
            _train_step(mod, opt, images, step, cfg, DistInfo(), torch.device("cpu"))
            if step >= 3:  # warm-up
                times[cond].append(time.perf_counter() - t)
    base, qac = statistics.median(times["none"]), statistics.median(times["qac"])
    print(f"{args.arch} preset, batch {args.batch}, {args.threads} thread(s), {args.steps} steps, "
          f"codebook 2^{args.code_dim}")
    print(f"  baseline step {1000 * base:.1f} ms, QAC step {1000 * qac:.1f} ms")
    print(f"  train-step time ratio QAC / baseline = {qac / base:.3f}   (target <= 1.05)")
    p = describe_preset("cifar10", None, "qac", 2, 20)["params"]
    print(f"cifar10 preset, codebook 2^20: denoiser {p['denoiser']:,} params (without QAC "
          f"{p['denoiser_without_qac']:,}), encoder {p['encoder']:,}")
    print(f"  encoder / denoiser parameter ratio = {100 * p['encoder_over_denoiser']:.2f}%   (target <= 3%)")


if __name__ == "__main__":
    main()
