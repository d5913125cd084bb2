"""The VAE condition's KL weight beta, measured on 2-D toys (the default of ``--cond vae --beta``).

Per data set, beta and seed one ``--cond vae`` run is trained with the toy benchmark's protocol
(:mod:`qac.bench.toybench`: rectified flow, package MLP, d = 2), plus the independent-coupling baseline
(``icfm``) as reference. Scored: energy distance of Euler samples at NFE 1, 2, 4, 8 (codes drawn from N(0, I)
per seed) against fresh data, L_CFM under the training coupling (code = posterior mean), and the code's
information: the mean over fresh points of sum_d KL(q(c | x0) || N(0, I)) in nats (near 0 = posterior
collapse). The chosen default is the beta with the lowest geometric mean of ED over NFE 1-8 and both sets.

Writes docs/results/vae_beta.md and .json. About 35 minutes on 2 shared CPU cores:

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/vae_beta.py --workdir runs/vae_beta [--smoke]
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from qac.bench.toybench import ToyBenchConfig, run_one
from qac.conditions.modes import gaussian_kl
from qac.data import sample_toy
from qac.train.run import load_run
from qac.util import seed_generator

BETAS = (0.01, 0.1, 1.0, 10.0)
DATASETS = ("8gaussians", "moons")
SEEDS = (0, 1)
NFES = (1, 2, 4, 8)


def code_nats(run_dir: Path, dataset: str, n: int = 4000) -> float:
    """Mean over fresh points of the code's KL to N(0, I), summed over its d dimensions (nats)."""
    run = load_run(run_dir, device="cpu")
    x = sample_toy(dataset, n, seed_generator(10**6 + 3))
    with torch.no_grad():
        mu, logvar = run.model.latent_posterior(x)
    return float(gaussian_kl(mu, logvar).sum(1).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="runs/vae_beta")
    ap.add_argument("--out", default="docs/results")
    ap.add_argument("--smoke", action="store_true", help="tiny budget (checks the script, numbers meaningless)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = ToyBenchConfig(steps=1000, n_eval=2000, lcfm_points=4000, nfes=NFES, curvature_steps=(8,),
                          rk45_points=8, code_dim=2)
    if args.smoke:
        base = replace(base, steps=20, n_eval=200, lcfm_points=200, train_points=2000)
    t0 = time.perf_counter()
    rows = []
    for ds in DATASETS:
        for label, beta in [("icfm", None), *[(f"vae beta={b:g}", b) for b in BETAS]]:
            for seed in SEEDS:
                method = "icfm" if beta is None else "vae"
                work = Path(args.workdir) / ("icfm" if beta is None else f"beta{beta:g}")
                rec = run_one(replace(base, beta=beta), ds, method, seed, work)
                rec.update(label=label, beta=beta)
                if beta is not None:
                    rec["code_nats"] = code_nats(work / f"{ds}-vae-s{seed}", ds)
                rows.append(rec)
                print(f"{ds} {label} s{seed}: " + " ".join(f"ed{k} {rec[f'ed{k}']:.4f}" for k in NFES)
                      + f" nats {rec.get('code_nats', float('nan')):.2f}", flush=True)
    write(rows, base, Path(args.out), time.perf_counter() - t0, args)


def _ms(vals: list[float]) -> str:
    a = np.asarray(vals, dtype=np.float64)
    return f"{a.mean():.4f} ± {a.std(ddof=1) if len(a) > 1 else 0.0:.4f}"


def write(rows: list[dict], cfg: ToyBenchConfig, out: Path, seconds: float, args) -> None:
    out.mkdir(parents=True, exist_ok=True)
    labels = list(dict.fromkeys(r["label"] for r in rows))
    score = {}
    for lab in labels:
        eds = [np.mean([r[f"ed{k}"] for r in rows if r["label"] == lab and r["dataset"] == ds])
               for ds in DATASETS for k in NFES]
        score[lab] = math.exp(np.mean(np.log(np.maximum(eds, 1e-12))))
    best = min((lab for lab in labels if lab != "icfm"), key=score.__getitem__)
    cmd = "OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/vae_beta.py " + " ".join(
        shlex.quote(a) for a in sys.argv[1:])
    lines = ["# VAE condition: the KL weight beta on 2-D toys", "",
             f"Command: `{cmd}` ({seconds / 60:.0f} min). Settings: rectified flow, package MLP, code d = "
             f"{cfg.code_dim}, {cfg.steps} steps x batch {cfg.batch_size}, lr {cfg.lr}, seeds {list(SEEDS)}; "
             f"ED = energy distance of {cfg.n_eval} Euler samples (uniform RF-time grid, codes ~ N(0, I) per "
             "seed) vs fresh data; nats = mean sum_d KL(q(c|x0) || N(0, I)) on 4000 fresh points; mean ± std "
             "over seeds.", ""]
    for ds in DATASETS:
        floor = np.mean([r["ed_floor"] for r in rows if r["dataset"] == ds])
        lines += [f"## {ds} (data floor ED {floor:.4f})", "",
                  "| method | " + " | ".join(f"ED@{k}" for k in NFES) + " | L_CFM | nats |",
                  "|---" * (len(NFES) + 3) + "|"]
        for lab in labels:
            sel = [r for r in rows if r["label"] == lab and r["dataset"] == ds]
            nats = _ms([r["code_nats"] for r in sel]) if "code_nats" in sel[0] else "-"
            lines.append(f"| {lab} | " + " | ".join(_ms([r[f"ed{k}"] for r in sel]) for k in NFES)
                         + f" | {_ms([r['lcfm'] for r in sel])} | {nats} |")
        lines.append("")
    lines += ["## Choice", "", "Geometric mean of the seed-mean ED over NFE {1, 2, 4, 8} and both sets:", ""]
    lines += [f"* {lab}: {score[lab]:.4f}" for lab in labels]
    lines += ["", f"Lowest among the VAE rows: **{best}**.", ""]
    (out / "vae_beta.md").write_text("\n".join(lines))
    (out / "vae_beta.json").write_text(json.dumps({"config": asdict(cfg), "rows": rows, "score": score,
                                                   "best": best, "seconds": seconds}, indent=1, default=str))
    print(f"best: {best}; wrote {out / 'vae_beta.md'}")


if __name__ == "__main__":
    main()
