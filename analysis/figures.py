"""Matplotlib figures of the analysis tables, drawn headless (Agg).

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot: no global figure
registry to leak from a long report build, no display needed, and a notebook shows them
as the last expression of a cell (after ``%matplotlib inline``).
"""

from __future__ import annotations

import io
from typing import Dict, Optional

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

from .tables import ErasureBreakdown

LOSS_UNITS = {"mse": "squared error", "kl": "nats", "ce": "nats"}


def _figure(width: float, height: float, columns: int) -> tuple:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # Agg explicitly: PNG output whatever backend the caller has set
    return fig, fig.subplots(1, columns, squeeze=False)[0]


def _plain_log_ticks(axis) -> None:
    """Label a log axis 10, 20, 50, ... instead of 2x10^1 (minor labels crowd each other)."""
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def _legend_above(ax, entries: int) -> None:
    """Legend in headroom above 100 % accuracy, so it never hides a bar."""
    ax.set_ylim(0, 1.18)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.legend(loc="upper center", ncol=min(entries, 3), fontsize=8, frameon=False)


def to_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def degraded_accuracy_figure(table: pd.DataFrame) -> Figure:
    """Bars of available vs degraded-mode accuracy per completed run (from ``degraded_accuracy_table``)."""
    done = table[table["status"] == "COMPLETED"]
    fig, (ax,) = _figure(max(5.0, 1.2 * len(done) + 2), 3.8, 1)
    labels = [f"{r.dataset}\n{r.model} k={r.k}\n{r.encoder}" for r in done.itertuples()]
    x = np.arange(len(done))
    ax.bar(x - 0.2, done["available_accuracy"], 0.4, label="available (base model)")
    ax.bar(x + 0.2, done["degraded_accuracy"], 0.4, label="degraded mode (decoded)")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_xlabel("run (dataset, model k, encoder)")
    ax.set_ylabel("test top-1 accuracy (fraction)")
    ax.set_title("Available vs degraded-mode accuracy")
    _legend_above(ax, 2)
    return fig


def learning_curves_figure(curves: pd.DataFrame, labels: Optional[Dict[str, str]] = None,
                           loss: Optional[str] = None) -> Figure:
    """Loss (train, val) and validation reconstruction / test degraded accuracy against epoch.

    ``curves`` comes from :func:`analysis.learning_curves`; ``labels`` maps run ids to legend
    text (:func:`analysis.run_labels`); ``loss`` names the loss for the axis unit.
    """
    labels = labels or {}
    fig, (ax_loss, ax_acc) = _figure(11, 4, 2)
    for i, (run_id, run) in enumerate(curves.groupby("run_id", sort=False)):
        name, color = labels.get(run_id, run_id), f"C{i}"  # one colour per run across both panels
        train, val, test = (run[run["split"] == split] for split in ("train", "val", "test"))
        if "loss" in run:
            ax_loss.plot(train["epoch"], train["loss"], ":", color=color, label=f"{name} (train)")
            ax_loss.plot(val["epoch"], val["loss"], "-", color=color, label=f"{name} (val)")
        if "reconstruction_top1" in run:
            ax_acc.plot(val["epoch"], val["reconstruction_top1"], "-", color=color, label=f"{name} val reconstruction")
        if "overall_top1" in run:
            ax_acc.plot(test["epoch"], test["overall_top1"], "--", color=color, label=f"{name} test degraded-mode")
    unit = LOSS_UNITS.get(loss or "", "loss units")
    ax_loss.set(xlabel="epoch", ylabel=f"{loss or 'training'} loss ({unit})", title="Parity-model loss", yscale="log")
    ax_acc.set(xlabel="epoch", ylabel="top-1 accuracy (fraction)", title="Reconstruction and degraded-mode accuracy",
               ylim=(0, 1))
    _plain_log_ticks(ax_loss.yaxis)
    for ax in (ax_loss, ax_acc):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return fig


def erasure_figure(breakdown: ErasureBreakdown, labels: Optional[Dict[str, str]] = None) -> Figure:
    """Per-class degraded accuracy, per-position accuracy and the KL distribution, one colour per run."""
    labels = labels or {}
    fig, (ax_class, ax_pos, ax_kl) = _figure(14, 4, 3)
    runs = list(dict.fromkeys(breakdown.by_class["run_id"]))
    width = 0.8 / max(len(runs), 1)
    for i, run_id in enumerate(runs):
        name = labels.get(run_id, run_id)
        cls = breakdown.by_class[breakdown.by_class["run_id"] == run_id]
        ax_class.bar(cls["label"] + (i - (len(runs) - 1) / 2) * width, cls["degraded_accuracy"], width, label=name)
        pos = breakdown.by_position[breakdown.by_position["run_id"] == run_id].groupby("position")["degraded_accuracy"].mean()
        ax_pos.bar(pos.index + (i - (len(runs) - 1) / 2) * width, pos.values, width, label=name)
    kl = breakdown.instances  # per-image mean KL keeps wrap-around duplicates from counting twice
    positive = kl["mean_kl"][kl["mean_kl"] > 0]
    bins = np.logspace(np.log10(max(positive.min(), 1e-6)), np.log10(max(positive.max(), 1e-5)), 30) if len(positive) else 10
    for run_id in runs:
        values = kl.loc[kl["run_id"] == run_id, "mean_kl"].clip(lower=1e-6)
        ax_kl.hist(values, bins=bins, histtype="step", linewidth=1.5, label=labels.get(run_id, run_id))
    ax_class.set(xlabel="true class", ylabel="degraded-mode accuracy (fraction)", title="Decoded accuracy by class")
    ax_pos.set(xlabel="erased position in the k-group", ylabel="degraded-mode accuracy (fraction)",
               title="Decoded accuracy by erased position")
    ax_kl.set(xlabel="KL(base ‖ decoded) per test image (nats)", ylabel="test images (count)", xscale="log",
              title="Distance of decoded from base outputs")
    for ax in (ax_class, ax_pos):
        _legend_above(ax, len(runs))
    ax_kl.legend(fontsize=7)
    ax_class.set_xticks(sorted(breakdown.by_class["label"].unique()))
    ax_pos.set_xticks(sorted(breakdown.by_position["position"].unique()))
    return fig


def latency_cdf_figure(cdf: pd.DataFrame) -> Figure:
    """Latency CDF (log x) and its tail, 1 - CDF on log-log axes, one line per simulation x mode."""
    fig, (ax_cdf, ax_tail) = _figure(11, 4, 2)
    several = cdf["simulation_id"].nunique() > 1
    for (simulation_id, mode), part in cdf.groupby(["simulation_id", "mode"], sort=False):
        name = f"{mode} ({simulation_id})" if several else mode
        ax_cdf.step(part["latency_ms"], part["fraction"], where="post", label=name)
        # 1 - CDF reaches 0 at the slowest query; stop one short so log scale can show it.
        tail = 1 - part["fraction"].to_numpy()
        ax_tail.step(part["latency_ms"].to_numpy()[:-1], tail[:-1], where="post", label=name)
    ax_cdf.set(xlabel="latency (ms)", ylabel="measured queries answered (fraction)", xscale="log", ylim=(0, 1.01),
               title="Latency CDF")
    ax_tail.set(xlabel="latency (ms)", ylabel="fraction of queries slower (1 - CDF)", xscale="log", yscale="log",
                title="Latency tail")
    for ax in (ax_cdf, ax_tail):
        _plain_log_ticks(ax.xaxis)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    return fig
