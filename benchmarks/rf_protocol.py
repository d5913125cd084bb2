"""The rectified-flow sampling protocol on the 2-D toys: why RK45 spends ~450 evaluations, and flow vs sigma grids.

Trains (or reuses, in --workdir) the toy benchmark's rf runs (seed 0, the default ToyBenchConfig) of
8gaussians and moons, baseline and QAC, plus a control run of 8gaussians baseline whose noise label is
c_noise = t instead of 999 t (RF(m=2)). Measures

* RK45 evaluations: scipy RK45 as the old toy benchmark ran it (t from 1 - 1e-4 to 1e-4, one flattened batch
  of 256, rtol = atol = 1e-5), scipy from t = 1 to 0, ours (qac.sampling.flow, batch of 256 sharing its
  steps, tolerances 1e-3 .. 1e-5), ours and scipy per sample (32 seeds), on the trained networks and on the
  exact velocity of the 8-Gaussian mixture; plus the mean |d^2 v / dt^2| along 64 Euler-1000 paths;
* energy distance of euler/heun under schedule flow vs polynomial vs logsnr at a few NFE.

Writes docs/results/rf_protocol.md and .json. About 15 minutes on 2 CPU cores (training included).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/rf_protocol.py [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import qac.diffusion.formulations as formulations
from qac.bench.toybench import ToyBenchConfig, train_toy
from qac.conditions import index_to_codes
from qac.eval.evaluate import toy_metric_of_run
from qac.sampling.flow import sample_flow
from qac.sampling.spec import SamplingSpec
from qac.train.run import load_run
from qac.util import per_seed_randn

RUNS = (("8gaussians", "icfm", 1000), ("8gaussians", "qac", 1000), ("moons", "icfm", 1000), ("moons", "qac", 1000),
        ("8gaussians", "icfm", 2))
ANG = [2 * math.pi * k / 8 for k in range(8)]
MU = torch.tensor([[4 * math.cos(a), 4 * math.sin(a)] for a in ANG], dtype=torch.float64)
S2 = 0.09  # 8gaussians: radius 4, std 0.3


def exact_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Exact RF velocity of the 8-Gaussian mixture: sum_k r_k(x_t) v_k(x_t), each v_k linear in x_t."""
    t = float(t)
    var = (1 - t) ** 2 * S2 + t * t
    diff = x[:, None, :] - (1 - t) * MU[None]
    r = torch.softmax(-(diff**2).sum(-1) / (2 * var), dim=1)
    return (r[:, :, None] * ((t - (1 - t) * S2) / var * diff - MU[None])).sum(1)


def model_velocity(run: Any, seeds: list[int]):
    model, y_q = run.model, None
    if model.conditional:
        y_q = index_to_codes(run.code_weights().sample(seeds=seeds), model.levels, model.code_dim)

    @torch.no_grad()
    def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model.velocity(x, t, y_q).double()

    return v


def scipy_nfe(vel, x1: torch.Tensor, t0: float, t1: float, tol: float) -> int:
    from scipy.integrate import solve_ivp

    shape = x1.shape

    def f(t: float, flat: np.ndarray) -> np.ndarray:
        return vel(torch.from_numpy(flat).reshape(shape), torch.tensor(t, dtype=torch.float64)).reshape(-1).numpy()

    start = x1 * t0 if t0 < 1 else x1  # the old benchmark's state at t_max
    return int(solve_ivp(f, (t0, t1), start.reshape(-1).numpy(), method="RK45", rtol=tol, atol=tol).nfev)


def rk45_record(make_vel, x1: torch.Tensor) -> dict[str, Any]:
    seeds = list(range(x1.shape[0]))
    vel = make_vel(seeds)
    rec: dict[str, Any] = {"scipy_old": scipy_nfe(vel, x1, 1 - 1e-4, 1e-4, 1e-5),
                           "scipy_t1": scipy_nfe(vel, x1, 1.0, 0.0, 1e-5)}
    for tol in (1e-3, 1e-4, 1e-5):
        rec[f"batch_{tol:g}"] = sample_flow(vel, x1, solver="rk45", rtol=tol, atol=tol).stats
    per = [sample_flow(make_vel([s]), x1[s:s + 1], solver="rk45", rtol=1e-5, atol=1e-5).stats for s in seeds[:32]]
    rec["per_sample_nfe"] = float(np.mean([p["nfe"] for p in per]))
    rec["per_sample_rejected"] = float(np.mean([p["rejected"] for p in per]))
    rec["scipy_per_sample_nfe"] = float(np.mean([scipy_nfe(make_vel([s]), x1[s:s + 1], 1.0, 0.0, 1e-5)
                                                 for s in seeds[:32]]))
    ts = torch.linspace(1, 0, 1001, dtype=torch.float64)
    x, vs, v64 = x1[:64].clone(), [], make_vel(seeds[:64])
    for k in range(1000):
        v = v64(x, ts[k])
        vs.append(v)
        x = x + (ts[k + 1] - ts[k]) * v
    big_v = torch.stack(vs)
    rec["d2v"] = float(((big_v[2:] - 2 * big_v[1:-1] + big_v[:-2]).norm(dim=-1).mean(1) * 1e6).mean())
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=None, help="where the runs are trained (reused when complete)")
    ap.add_argument("--out", default="docs/results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rfproto-"))
    cfg = ToyBenchConfig()
    x1 = per_seed_randn(list(range(256)), (2,), dtype=torch.float64)
    rk, ed = {"exact 8gaussians": rk45_record(lambda s: exact_velocity, x1)}, {}
    for ds, method, m in RUNS:
        formulations.FORMULATIONS["rf"] = formulations.RF(m=m)
        name = f"{ds}-{method}" + ("" if m == 1000 else f"-m{m}")
        if not (work / name / "checkpoint").exists():
            train_toy(cfg, ds, method, 0, work / name)
        run = load_run(work / name, device="cpu")
        rk[name] = rk45_record(lambda s, run=run: model_velocity(run, s), x1)
        print(name, json.dumps(rk[name]), flush=True)
        if name in ("8gaussians-icfm", "moons-qac"):
            for solver, nfes in (("euler", (2, 4, 8)), ("heun", (3, 5, 7, 9))):
                for sched in ("flow", "polynomial", "logsnr"):
                    for nfe in nfes:
                        spec = SamplingSpec(solver=solver, nfe=nfe, schedule=sched)
                        ed[f"{name}|{solver}|{sched}|{nfe}"] = toy_metric_of_run(run, spec=spec, num=2000).value
    formulations.FORMULATIONS["rf"] = formulations.RF()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rf_protocol.json").write_text(json.dumps({"rk45": rk, "energy_distance": ed}, indent=1))
    (out / "rf_protocol.md").write_text(report(rk, ed, time.perf_counter() - t_start))


def report(rk: dict[str, Any], ed: dict[str, float], seconds: float) -> str:
    lines = ["# The rf protocol on 2-D toys: RK45 evaluations and flow vs sigma grids", "",
             "Written by `OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/rf_protocol.py` "
             f"({seconds / 60:.0f} min). Runs: the toy benchmark's defaults (rf, MLP, 1200 steps, seed 0); "
             "`-m2` is the control trained with c_noise = t instead of 999 t. Velocity at x_1 = per-seed noise.",
             "", "## RK45 evaluations (rtol = atol = 1e-5 unless named)", "",
             "| velocity | scipy, t 1-1e-4 → 1e-4, batch 256 (old bench) | scipy, t 1 → 0 | ours, batch 256, "
             "1e-3 | 1e-4 | 1e-5 (rejected) | ours per sample (rejected) | scipy per sample | mean abs d²v/dt² |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rk.items():
        b = r["batch_1e-05"]
        lines.append(f"| {name} | {r['scipy_old']} | {r['scipy_t1']} | {r['batch_0.001']['nfe']} | "
                     f"{r['batch_0.0001']['nfe']} | {b['nfe']} ({b['rejected']}) | {r['per_sample_nfe']:.0f} "
                     f"({r['per_sample_rejected']:.1f}) | {r['scipy_per_sample_nfe']:.0f} | {r['d2v']:.3g} |")
    lines += ["", "## Energy distance: the rf protocol vs sigma schedules (2000 samples)", "",
              "| run | solver | schedule | " + " | ".join(["NFE"] * 1) + " → ED |", "|---|---|---|---|"]
    groups: dict[tuple[str, str, str], list[str]] = {}
    for key, v in ed.items():
        name, solver, sched, nfe = key.split("|")
        groups.setdefault((name, solver, sched), []).append(f"{nfe}: {v:.4f}")
    for (name, solver, sched), cells in groups.items():
        lines.append(f"| {name} | {solver} | {sched} | {', '.join(cells)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
