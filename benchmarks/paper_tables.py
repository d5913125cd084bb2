"""The paper's Tables 1-5 as commands, on the rectified-flow formulation (the paper's setting for them).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/paper_tables.py --table 1 [--scale cpu|full|smoke]
        [--budget 1.0] [--workdir runs/paper_tables] [--data toy:checkerboard:50000,digits16] [--workers 2]

* Tab. 1: L_CFM and trajectory curvature of the RF baseline, RNE, QAC and QAC+RNE (same budget).
* Tab. 2: online vs offline code weights, score with Heun (NFE 5 and 7: Heun with a final Euler step spends
  2N - 1 evaluations, so the paper's 6 is not reachable) and RK45 (NFE reported).
* Tab. 3: FSQ levels L at a fixed codebook size |C| with d = log_L |C|, and the continuous (VAE) condition.
* Tab. 4: codebook scaling |C| = 2^4 ... 2^20 (L = 2), with a plot of the score vs |C|.
* Tab. 5: RNE vs QAC vs QAC+RNE at few NFE.

``--scale cpu`` trains on 2-D toy data (``--data`` adds or replaces sets, e.g. ``digits16``), about 10 minutes
per table on 2 cores with ``--budget 1`` (training steps scale with ``--budget``); ``smoke`` is a seconds-long
check that everything runs; ``full`` prints the commands of the paper's CIFAR-10 scale (not run). Runs are
kept in ``--workdir`` and reused by every table whose settings coincide (keyed by their full configuration).
Writes ``docs/results/tableN.md`` and ``tableN.json`` (+ ``table4.png``).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from qac.bench.runs import RunSpec, cond_available
from qac.bench.scoring import Scorer, toy_name
from qac.bench.tables import (
    Claim,
    EvalPlan,
    Job,
    check_claim,
    fmt,
    protocol_name,
    run_job,
    save_json,
    summarize,
)

CAPTIONS = {
    1: "The result of the optimized L_CFM and average curvature of ODE trajectories after training by 15M "
       "images drawn from the dataset Cifar10. We use the same model configs and sampler as Reparamized Noise "
       "Encoder (RNE) with a prior regularization β = 20 for a fair comparison.",
    2: "A comparison of online and offline collection, based on ODE trajectory of RectifiedFlow with a "
       "condition codebook size 2^20.",
    3: "FIDs with different settings of condition encoder.",
    4: "FID on CIFAR10 with Heun's method when scaling the codebook size.",
    5: "Applying reparamized noise encoder (RNE) and quantized adaptive conditions (QAC) at the same time.",
}
TITLES = {1: "L_CFM and curvature: RF, RNE, QAC, QAC+RNE", 2: "Online vs offline code weights",
          3: "Condition encoders: FSQ levels at a fixed codebook size, and a VAE condition",
          4: "Codebook scaling", 5: "RNE, QAC and QAC+RNE at few NFE"}
FSQ_LEVELS = (2, 4, 8, 16, 64)
HEADERS = {"lcfm": "L_CFM", "rk45_nfe": "RK45 NFE", "codes_used": "codes > 1e-3", "perplexity": "perplexity",
           "train_s": "train s"}


@dataclass(frozen=True)
class Scale:
    """Data and budget of one scale. ``toys``: the data sets of Tab. 1 and 5; ``toy``: the one of Tab. 2-4.
    ``bits``: log2 |C| of the main QAC code (points / images); ``t4_bits``: Tab. 4's codebooks; ``t3_bits``:
    Tab. 3's fixed codebook (the paper's 2^12)."""

    name: str
    toys: tuple[str, ...] = ("toy:8gaussians:50000", "toy:checkerboard:50000")
    toy: str = "toy:checkerboard:50000"
    steps: int = 1000
    batch_size: int = 256
    image_steps: int = 400
    image_batch: int = 64
    seeds: tuple[int, ...] = (0, 1, 2)
    n_eval: int = 2000
    image_n_eval: int = 300
    lcfm_points: int = 4000
    lcfm_ts: int = 10
    curvature_steps: tuple[int, ...] = (100,)
    rk45_tol: float = 1e-5
    bits: int = 6
    image_bits: int = 12
    t2_bits: tuple[int, ...] = (6, 20)
    t4_bits: tuple[int, ...] = (4, 6, 8, 12, 16, 20)
    t3_bits: int = 12
    beta: float = 20.0

    def is_image(self, data: str) -> bool:
        return toy_name(data) is None

    def main_bits(self, data: str) -> int:
        return self.image_bits if self.is_image(data) else self.bits

    def spec(self, data: str, cond: str, seed: int, levels: int = 2, code_dim: int = 8) -> RunSpec:
        image = self.is_image(data)
        return RunSpec(data=data, cond=cond, seed=seed, steps=self.image_steps if image else self.steps,
                       batch_size=self.image_batch if image else self.batch_size, levels=levels,
                       code_dim=code_dim, beta=self.beta if cond in ("rne", "qac+rne") else None)

    def plan(self, data: str, **kw: Any) -> EvalPlan:
        n = self.image_n_eval if self.is_image(data) else self.n_eval
        return EvalPlan(n_eval=n, lcfm_ts=self.lcfm_ts, rk45_tol=self.rk45_tol, **kw)


SCALES = {
    "cpu": Scale("cpu"),
    "smoke": Scale("smoke", toys=("toy:moons:2000",), toy="toy:moons:2000", steps=20, batch_size=32,
                   image_steps=2, image_batch=8, seeds=(0, 1), n_eval=64, image_n_eval=32, lcfm_points=128,
                   lcfm_ts=3, curvature_steps=(10,), rk45_tol=1e-3, bits=4, image_bits=4, t2_bits=(4,),
                   t4_bits=(4, 20), t3_bits=4),
}


@dataclass(frozen=True)
class Row:
    """One table row: a label, a run template (seed 0) and the code weights it samples with."""

    label: str
    cond: str
    levels: int = 2
    code_dim: int = 8
    codes: str = "online"


@dataclass(frozen=True)
class TablePlan:
    number: int
    tasks: tuple[str, ...]
    rows: tuple[Row, ...]
    columns: tuple[str, ...]
    eval_kw: dict
    claims: tuple[Claim, ...]
    notes: tuple[str, ...] = ()


def _qac(bits: int, levels: int = 2, label: str | None = None, codes: str = "online") -> Row:
    d = round(bits / math.log2(levels))
    return Row(label or f"QAC L={levels}, d={d} (|C| = 2^{bits})", "qac", levels, d, codes)


def table_plan(n: int, sc: Scale, tasks: tuple[str, ...] | None) -> TablePlan:
    """Rows, columns, evaluation and the paper's stated directions of table ``n`` at scale ``sc``."""
    multi = tasks or sc.toys
    single = tasks or (sc.toy,)
    bits = sc.main_bits(single[0])
    qac_main = _qac(bits, label="QAC")
    base, rne, both = Row("RF baseline", "none"), Row(f"RNE (β = {sc.beta:g})", "rne"), Row(
        f"QAC+RNE (β = {sc.beta:g})", "qac+rne", 2, bits)
    qac_main = replace(qac_main, label=f"QAC (L = 2, d = {bits})")
    if n == 1:
        curv = f"curv{sc.curvature_steps[0]}"
        claims = tuple(Claim(f"{r.label} lowers {c} below the RF baseline (§3.1)", "below", (r.label, base.label), c)
                       for c in ("lcfm", curv) for r in (rne, qac_main, both))
        claims += (Claim("QAC+RNE has the lowest curvature (§4.2: 'further reduce the curvature')", "best",
                         (both.label, rne.label, qac_main.label), curv),)
        return TablePlan(1, multi, (base, rne, qac_main, both), ("lcfm", *(f"curv{k}" for k in sc.curvature_steps)),
                         {"lcfm_points": sc.lcfm_points, "curvature_steps": sc.curvature_steps}, claims)
    if n == 2:
        rows, claims = [], []
        for b in sc.t2_bits:
            on, off = _qac(b, label=f"online, |C| = 2^{b}"), _qac(b, label=f"offline, |C| = 2^{b}", codes="offline")
            rows += [on, off]
            claims += [Claim(f"online beats offline at |C| = 2^{b} with {c} (§3.3)", "below", (on.label, off.label), c)
                       for c in ("heun@5", "heun@7", "rk45")]
        return TablePlan(2, single, tuple(rows), ("heun@5", "heun@7", "rk45", "rk45_nfe", "codes_used", "perplexity"),
                         {"samplers": ("heun@5", "heun@7", "rk45")}, tuple(claims),
                         ("Heun with a final Euler step spends 2N − 1 evaluations: NFE 6 (the issue's setting) is "
                          "not reachable, so NFE 5 and 7 are reported.",
                          "Both rows of a codebook are the same runs: only the code weights differ (online: the EMA "
                          "histogram of Alg. 1; offline: `qac collect` on the training set with the EMA encoder)."))
    if n == 3:
        bits = sc.t3_bits  # the paper's fixed |C| = 2^12 (every L of Tab. 3 divides it)
        fsq = [_qac(bits, lv, label=f"FSQ L = {lv}, d = {round(bits / math.log2(lv))}") for lv in FSQ_LEVELS
               if bits % round(math.log2(lv)) == 0]
        missing = [lv for lv in FSQ_LEVELS if bits % round(math.log2(lv)) != 0]
        vae = Row(f"VAE (continuous, d = {bits})", "vae", 2, bits)
        claims = [Claim("smaller L is better at a fixed |C| (§4.1)", "increasing", tuple(r.label for r in fsq), c)
                  for c in ("heun@3", "heun@5")]
        claims += [Claim("FSQ (L = 2) outperforms the VAE condition (§4.1)", "below", (fsq[0].label, vae.label), c)
                   for c in ("heun@3", "heun@5")]
        claims += [Claim("every encoder beats the RF baseline at few steps (§4.1)", "all_below",
                         (*(r.label for r in fsq), vae.label, base.label), "heun@3")]
        notes = (f"|C| = 2^{bits}; L = {', '.join(map(str, missing))} left out: d = log_L |C| is not an integer.",
                 ) if missing else ()
        return TablePlan(3, single, (base, *fsq, vae), ("heun@3", "heun@5", "codes_used", "perplexity"),
                         {"samplers": ("heun@3", "heun@5")}, tuple(claims), notes)
    if n == 4:
        rows = tuple(_qac(b, label=f"|C| = 2^{b}") for b in sc.t4_bits)
        claims = tuple(Claim("scaling |C| always helps (§4.1)", "decreasing", tuple(r.label for r in rows), c)
                       for c in ("heun@3", "heun@5"))
        return TablePlan(4, single, (base, *rows), ("heun@3", "heun@5", "codes_used", "perplexity"),
                         {"samplers": ("heun@3", "heun@5")}, claims)
    if n == 5:
        cols = ("euler@1", "euler@2", "heun@3", "heun@5")
        claims = tuple(Claim("best with both RNE and QAC (§4.2)", "best", (both.label, rne.label, qac_main.label), c)
                       for c in cols)
        return TablePlan(5, multi, (base, rne, qac_main, both), (*cols, "codes_used"), {"samplers": cols}, claims)
    raise SystemExit(f"no table {n}")


def build_jobs(tp: TablePlan, sc: Scale, workdir: str, reuse: bool) -> tuple[list[Job], list[str]]:
    """One job per distinct run (rows sharing a run share its job); rows of unavailable conditions skipped."""
    jobs: dict[RunSpec, list] = {}
    skipped = []
    for row in tp.rows:
        if not cond_available(row.cond):
            skipped.append(f"{row.label}: `--cond {row.cond}` is not available in this build (skipped)")
            continue
        for task in tp.tasks:
            plan = sc.plan(task, codes=row.codes, **tp.eval_kw)
            for seed in sc.seeds:
                jobs.setdefault(sc.spec(task, row.cond, seed, row.levels, row.code_dim), []).append(
                    (tp.number, row.label, plan))
    return [Job(spec, tuple(ev), workdir, reuse) for spec, ev in jobs.items()], skipped


def markdown(tp: TablePlan, sc: Scale, records: list[dict], floors: dict, skipped: list[str], command: str,
             seconds: float, metric: dict) -> str:
    cols = (*tp.columns, "train_s")
    summ = summarize(records, cols)
    heads = [HEADERS.get(c, c) for c in cols]
    plan = sc.plan(tp.tasks[0], **tp.eval_kw)
    lines = [f"# Table {tp.number}: {TITLES[tp.number]}", "",
             f"Command: `{command}` ({_cost(records, seconds)}; single-threaded worker processes on a shared "
             "2-core CPU).", "",
             f"Paper, Tab. {tp.number}: \"{CAPTIONS[tp.number]}\"", "",
             "**The paper's table bodies are not in the text we have**, so no number is compared with the paper's; "
             "the directions its text states are checked below.", "",
             f"Set-up (scale `{sc.name}`): rectified-flow formulation (`--formulation rf`), EMA weights, Adam lr "
             f"1e-3; points: package MLP, {sc.steps} steps × batch {sc.batch_size}; images: {sc.image_steps} steps "
             f"× batch {sc.image_batch}. Same budget and seeds for every row; seeds "
             f"{', '.join(map(str, sc.seeds))}, cells are mean ± std over seeds. Codes drawn per seed from the "
             "online code weights unless the row says offline. RNE rows: β = "
             f"{sc.beta:g} (per-dimension KL, the paper's Tab. 1 setting); generation from N(0, I).",
             "", f"Sampling: RF protocol `{protocol_name()}` (`--schedule flow`): uniform t grid from t = 1, Heun "
             "with a final Euler step (NFE = 2N − 1), RK45 in t (rtol = atol = the plan's tolerance; its NFE is the "
             "mean per sample over 32 seeds, each solved alone).", ""]
    if plan.lcfm_points:
        lines += [f"L_CFM: per dimension, {plan.lcfm_points} points (toys: fresh; images: a seeded subset of the "
                  f"training set, no held-out split), mean over a {plan.lcfm_ts}-point "
                  "midpoint t-grid, each point's own code (QAC) / the training coupling (RNE). Curvature: RNE "
                  f"estimator on Euler with K = {', '.join(map(str, plan.curvature_steps))} steps from "
                  f"{plan.n_eval} prior draws.", ""]
    if plan.samplers:
        lines += [f"Scores (lower is better): {metric['points']} on points and {metric['image']} on images, "
                  "each with its data floor (real data scored the same way). `heun@k`: Heun at NFE k; `rk45`: "
                  f"RK45 at rtol = atol = {plan.rk45_tol:g}, scored on one batch of all {plan.n_eval} seeds; its NFE "
                  "column is the mean per sample over the first 32 seeds, each solved alone (a batch shares its "
                  "steps, so it spends what its worst member needs: docs/solvers.md).", ""]
    for task in tp.tasks:
        lines += [f"## {toy_name(task) or task} (`--data {task}`" + (f", data floor {floors[task]:.4g})" if task in
                                                                      floors else ")"), "",
                  "| row | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
        for row in tp.rows:
            s = summ.get((task, row.label))
            if s is not None:
                label = row.label.replace("|", "\\|")  # |C| inside a markdown table cell
                lines.append(f"| {label} | " + " | ".join(fmt(s.get(c)) for c in cols) + " |")
        lines += ["", "Directions stated by the paper:", ""]
        lines += [f"* {c.text}: {check_claim(c, summ, task)}" for c in tp.claims]
        lines.append("")
    notes = [*tp.notes, *skipped]
    if notes:
        lines += ["## Notes", "", *(f"* {n}" for n in notes), ""]
    return "\n".join(lines)


def plot_table4(tp: TablePlan, records: list[dict], path: Path) -> Path | None:
    """Score vs log2 |C| per task and sampler (the baseline as a dashed line)."""
    from qac.metrics.plots import pyplot, save_figure

    summ = summarize(records, tp.columns)
    plt = pyplot()
    fig, axes = plt.subplots(1, len(tp.tasks), figsize=(4.5 * len(tp.tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tp.tasks):
        for col in ("heun@3", "heun@5"):
            pts = [(int(r.label.split("^")[1]), summ[(task, r.label)][col]) for r in tp.rows
                   if r.cond == "qac" and col in summ.get((task, r.label), {})]
            if pts:
                line = ax.errorbar([p[0] for p in pts], [p[1][0] for p in pts], yerr=[p[1][1] for p in pts],
                                   marker="o", capsize=3, label=col)
                b = summ.get((task, "RF baseline"), {}).get(col)
                if b is not None:
                    ax.axhline(b[0], ls="--", color=line[0].get_color(), alpha=0.6, label=f"{col} RF baseline")
        ax.set_xlabel("log2 |C|")
        ax.set_ylabel("score (lower is better)")
        ax.set_title(task, fontsize=9)
        ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=110)


def _cost(records: list[dict], seconds: float) -> str:
    """What the table cost: this invocation's wall time, runs reused, and the summed cost from scratch."""
    runs = {r["run"]: r for r in records}
    train = sum(r["train_s"] for r in runs.values())
    evals = sum(r.get("eval_s", 0.0) for r in records)
    reused = sum(1 for r in runs.values() if r["reused"])
    return (f"this invocation {seconds / 60:.1f} min wall, {reused} of {len(runs)} runs reused from the work "
            f"folder; from scratch {train / 60:.1f} min of training + {evals / 60:.1f} min of evaluation summed "
            "over runs")


def full_commands(n: int) -> list[str]:
    """The paper-scale (CIFAR-10, GPUs) commands of table ``n``. Training: RNE's CIFAR-10 recipe, which Tab. 1
    says the paper follows (batch 128, lr 2e-4, warm-up 5k steps, EMA 0.9999 per step = half-life 0.89 Mimg,
    h-flip) for 15M images (117,188 steps); the paper gives no budget for Tab. 2-5, so they use the same one.
    Sampling with the RF protocol options (``--schedule flow``), scored by FID against the CIFAR-10 reference."""
    train = ("qac train --data cifar10-32x32.zip --arch cifar10 --formulation rf --batch 128 --lr 2e-4 "
             "--warmup 5000 --steps 117188 --ema-halflife 887000 --xflip --cond {cond} {code}--seed {seed} "
             "--out runs/paper/{name}-s{seed}")
    big = "--levels 2 --code-dim 20 "
    seeds = (0, 1, 2)

    def fid(name: str, seed: int, solver: str, nfe: int | None, codes: str | None = "online") -> str:
        tag = f"{solver}{nfe or ''}" + (f"-{codes}" if codes else "")
        return (f"qac fid calc --run runs/paper/{name}-s{seed} --ref cifar10-32x32.npz --num 50000 --solver {solver} "
                + (f"--nfe {nfe} " if nfe else "--opt rtol=1e-5 --opt atol=1e-5 ") + "--schedule flow "
                + (f"--codes {codes} " if codes else "") + f"--json runs/paper/{name}-s{seed}/fid-{tag}.json")

    rows = {1: [("rf", "none", ""), ("rne", "rne", "--beta 20 "), ("qac", "qac", big),
                ("qac-rne", "qac+rne", big + "--beta 20 ")],
            2: [("qac", "qac", big)],
            3: [(f"fsq-L{lv}", "qac", f"--levels {lv} --code-dim {12 // round(math.log2(lv))} ") for lv in FSQ_LEVELS]
            + [("vae", "vae", "--code-dim 12 "), ("rf", "none", "")],
            4: [("rf", "none", "")]
            + [(f"qac-2e{b}", "qac", f"--levels 2 --code-dim {b} ") for b in (4, 8, 12, 16, 20)]}
    rows[5] = rows[1]
    out = [train.format(cond=cond, code=code, seed=seed, name=name) for name, cond, code in rows[n] for seed in seeds]
    for name, cond, _ in rows[n]:
        for seed in seeds:
            if n == 1:
                out.append(f"qac analyze --run runs/paper/{name}-s{seed} --num 10000 --curvature-steps 100")
            elif n == 2:
                out.append(f"qac collect --run runs/paper/{name}-s{seed}")
                out += [fid(name, seed, solver, nfe, codes) for codes in ("online", "offline")
                        for solver, nfe in (("heun", 5), ("heun", 7), ("rk45", None))]
            else:
                out += [fid(name, seed, "heun", nfe, None if cond in ("none", "rne", "vae") else "online")
                        for nfe in ((3, 5, 7) if n == 5 else (7,))]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", type=int, choices=range(1, 6), required=True)
    p.add_argument("--scale", choices=("cpu", "full", "smoke"), default="cpu")
    p.add_argument("--budget", type=float, default=1.0, help="multiplies the training steps (cpu scale)")
    p.add_argument("--data", default=None, help="comma-separated data sources replacing the scale's toys "
                   "(e.g. digits16 or toy:moons:50000)")
    p.add_argument("--seeds", default=None, help="comma-separated training seeds (default 0,1,2)")
    p.add_argument("--workdir", default="runs/paper_tables", help="run folders, reused across tables")
    p.add_argument("--reuse", action=argparse.BooleanOptionalAction, default=True,
                   help="reuse complete runs of the same configuration in --workdir (and their scores)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default="docs/results")
    a = p.parse_args()
    if a.scale == "full":
        print(f"# Table {a.table} at the paper's scale (CIFAR-10 32x32 on GPUs; not run here). Paper: "
              f"{CAPTIONS[a.table]}\n# Training: RNE's CIFAR-10 recipe (Tab. 1 follows it; the paper gives no "
              "budget for Tab. 2-5), 15M images, 3 seeds. Sampling: the RF protocol options as `qac fid calc "
              "--help` lists them. Scores: FID against the CIFAR-10 reference statistics.")
        print("\n".join(full_commands(a.table)))
        return
    command = "OMP_NUM_THREADS=1 PYTHONPATH=src python " + shlex.join(["benchmarks/paper_tables.py", *sys.argv[1:]])
    sc = SCALES[a.scale]
    sc = replace(sc, steps=max(1, round(sc.steps * a.budget)), image_steps=max(1, round(sc.image_steps * a.budget)))
    if a.seeds:
        sc = replace(sc, seeds=tuple(int(s) for s in a.seeds.split(",")))
    tasks = tuple(a.data.split(",")) if a.data else None
    tp = table_plan(a.table, sc, tasks)
    jobs, skipped = build_jobs(tp, sc, a.workdir, a.reuse)
    t0 = time.perf_counter()
    if a.workers > 1 and len(jobs) > 1:
        with mp.get_context("spawn").Pool(a.workers) as pool:
            results = pool.map(run_job, jobs, chunksize=1)
    else:
        results = [run_job(j) for j in jobs]
    records = [r for rs in results for r in rs]
    seconds = time.perf_counter() - t0
    floors = {}
    if any(c in tp.columns for c in ("heun@3", "heun@5", "euler@1", "rk45")):
        floors = {t: Scorer(t, sc.plan(t).n_eval).data_floor() for t in tp.tasks}
    metric = {"points": "energy distance vs fresh points", "image": "`proxy_randconv_fd` (a proxy, not FID) vs "
              "the whole image set"}
    out = Path(a.out)
    md = markdown(tp, sc, records, floors, skipped, command, seconds, metric)
    save_json(out / f"table{a.table}.json", {"command": command, "scale": asdict(sc), "protocol": protocol_name(),
                                             "tasks": list(tp.tasks), "rows": [asdict(r) for r in tp.rows],
                                             "columns": list(tp.columns), "skipped": skipped, "floors": floors,
                                             "records": records, "seconds": seconds})
    (out / f"table{a.table}.md").write_text(md)
    if a.table == 4:
        plot_table4(tp, records, out / "table4.png")
    print(md)


if __name__ == "__main__":
    main()
