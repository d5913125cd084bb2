"""Plot helpers for evaluation outputs; matplotlib is imported lazily (an optional dependency)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qac.errors import QACError


def pyplot() -> Any:
    """``matplotlib.pyplot`` with the non-interactive Agg backend, or a one-line QACError."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise QACError("plots need matplotlib: pip install matplotlib") from None
    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    """Save a matplotlib figure (tight layout, parent folders created) and close it."""
    plt = pyplot()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_metric_vs_nfe(rows: Sequence[dict[str, Any]], metric: str, path: str | Path, *,
                       title: str | None = None) -> Path:
    """One line per (run, solver): ``value`` against ``nfe`` (log-scaled y when all values are positive)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    lines: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for r in rows:
        lines.setdefault((r["run_name"], r["solver"]), []).append((int(r["nfe"]), float(r["value"])))
    for (run, solver), pts in sorted(lines.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"{run} / {solver}")
    values = [float(r["value"]) for r in rows]
    if values and min(values) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("NFE")
    label = f"{metric} (proxy, not FID)" if metric.startswith("proxy_") else metric
    ax.set_ylabel(label)
    ax.set_title(title or f"{label} vs NFE")
    ax.legend(fontsize=7)
    return save_figure(fig, path)
