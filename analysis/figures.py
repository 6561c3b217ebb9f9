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


def torch_index(values: np.ndarray):
    import torch

    return torch.from_numpy(np.array(values, dtype=np.int64))

LEGEND_RUNS = 10  # above this many runs a static legend is a wall of text: the report's interactive charts name them
COLOURS = 10  # matplotlib's C0..C9 (the report's interactive PALETTE holds the same ten)
NAMED_DASHES = ["-", "--", ":", "-."]


def series_styles(keys) -> Dict[tuple, tuple]:
    """(colour index, dash index) per ``(colour_key, style_key)`` pair, distinct for every pair.

    The colour follows the first key (a mode: few, the same colour in every panel and chart), the
    dash the second (a simulation, or a sweep's k x r x straggler x cluster size). Past ten colour
    keys the colours repeat, so the dash moves on as well: no two different series share both."""
    pairs = list(dict.fromkeys(tuple(k) for k in keys))
    colours = list(dict.fromkeys(c for c, _ in pairs))
    styles = list(dict.fromkeys(s for _, s in pairs))
    wraps = max(1, -(-len(colours) // COLOURS))
    return {(c, s): (colours.index(c) % COLOURS, styles.index(s) * wraps + colours.index(c) // COLOURS) for c, s in pairs}


def dash(index: int):
    """Matplotlib line style number ``index``: solid, dashed, dotted, dash-dot, then a dash with more dots each."""
    if index < len(NAMED_DASHES):
        return NAMED_DASHES[index]
    return (0, (6, 2) + (1, 2) * (index - len(NAMED_DASHES) + 2))


def _legends(fig: Figure) -> list:
    return list(fig.legends) + [ax.get_legend() for ax in fig.get_axes() if ax.get_legend() is not None]


def _outside(extent, box, slack: float = 1.0) -> bool:
    return (extent.x0 < box.x0 - slack or extent.x1 > box.x1 + slack or extent.y0 < box.y0 - slack
            or extent.y1 > box.y1 + slack)


def _fit_legends(fig: Figure, tries: int = 10) -> Figure:
    """Keep every legend inside the figure canvas (a saved PNG clips what lies outside it): the legends
    took as few columns as they need (``_columns_that_fit``); one that still does not fit makes the figure larger."""
    for _ in range(tries):
        fig.draw_without_rendering()  # the layout and the legends' places, no pixels (savefig draws those)
        box = fig.bbox
        outside = [legend for legend in _legends(fig) if _outside(legend.get_window_extent(), box)]
        if not outside:
            break
        grow_w = grow_h = 0.0
        for legend in outside:
            extent = legend.get_window_extent()
            grow_w = max(grow_w, extent.width - box.width + 16, box.x0 - extent.x0 + 8, extent.x1 - box.x1 + 8)
            grow_h = max(grow_h, box.y0 - extent.y0 + 8, extent.y1 - box.y1 + 8)
        if grow_w > 0 or grow_h > 0:
            width, height = fig.get_size_inches()
            fig.set_size_inches(width + max(grow_w, 0.0) / fig.dpi, height + max(grow_h, 0.0) / fig.dpi)
    return fig


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


def _columns_that_fit(fig: Figure, make, columns: int):
    """``make(ncol)`` draws a legend; it is drawn again with fewer columns until it is no wider than the figure."""
    columns = max(1, columns)
    while True:
        legend = make(columns)
        # a legend's width is its own (entries, font, columns): measured without laying out the figure
        if columns == 1 or legend.get_window_extent(fig.canvas.get_renderer()).width <= fig.bbox.width - 8:
            return legend
        legend.remove()
        columns -= 1


def _legend_below(fig: Figure, ax, columns: int = 4) -> None:
    """One legend for the whole figure, under the panels (constrained layout makes room): never over data,
    in as many columns as fit the figure's width."""
    handles, names = ax.get_legend_handles_labels()
    if handles:
        _columns_that_fit(fig, lambda ncol: fig.legend(handles, names, loc="outside lower center", ncol=ncol, fontsize=8,
                                                       frameon=False), min(columns, len(handles)))


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
    return _fit_legends(fig)


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
        # a run of one epoch is one point per curve: a line alone would draw nothing, so mark the points
        dot = {"marker": "o", "markersize": 4} if run["epoch"].nunique() == 1 else {}
        hollow = {**dot, "markerfacecolor": "none"} if dot else {}  # train and test points, beside val's filled ones
        if "loss" in run:
            ax_loss.plot(train["epoch"], train["loss"], ":", color=color, label=f"{name} (train)", **hollow)
            ax_loss.plot(val["epoch"], val["loss"], "-", color=color, label=f"{name} (val)", **dot)
        if "reconstruction_top1" in run:
            ax_acc.plot(val["epoch"], val["reconstruction_top1"], "-", color=color, label=f"{name} val reconstruction", **dot)
        if "overall_top1" in run:
            ax_acc.plot(test["epoch"], test["overall_top1"], "--", color=color, label=f"{name} test degraded-mode", **hollow)
    from parity_ray.losses import loss_units  # torch: imported when a loss curve is drawn

    unit = loss_units(loss or "")
    ax_loss.set(xlabel="epoch", ylabel=f"{loss or 'training'} loss ({unit})", title="Parity-model loss", yscale="log")
    ax_acc.set(xlabel="epoch", ylabel="top-1 accuracy (fraction)", title="Reconstruction and degraded-mode accuracy",
               ylim=(0, 1))
    _plain_log_ticks(ax_loss.yaxis)
    many = curves["run_id"].nunique() > LEGEND_RUNS
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        handles, names = ax.get_legend_handles_labels()
        if handles and not many:  # under its own panel, outside the axes
            _columns_that_fit(fig, lambda ncol, ax=ax, handles=handles, names=names: ax.legend(
                handles, names, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=ncol, fontsize=7, frameon=False), 2)
    return _fit_legends(fig)


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
        ax.set_ylim(0, 1)
    if len(runs) <= LEGEND_RUNS:
        _legend_below(fig, ax_class)  # same colour per run in all three panels
    ax_class.set_xticks(sorted(breakdown.by_class["label"].unique()))
    ax_pos.set_xticks(sorted(breakdown.by_position["position"].unique()))
    return _fit_legends(fig)


def latency_cdf_figure(cdf: pd.DataFrame, labels: Optional[Dict[str, str]] = None) -> Figure:
    """Latency CDF (log x) and its tail, 1 - CDF on log-log axes, one line per simulation x mode.

    Lines are keyed by simulation: queries of different simulations (runs, rates, stragglers) are never
    pooled. The colour names the mode, the line style the simulation (``labels`` maps simulation ids to
    legend text, :func:`analysis.simulation_labels`; the id itself otherwise)."""
    labels = labels or {}
    groups = list(cdf.groupby(["simulation_id", "mode"], sort=False))
    several = cdf["simulation_id"].nunique() > 1
    fig, (ax_cdf, ax_tail) = _figure(11, 4 + (0.15 * len(groups) if several else 0), 2)  # room for the legend's rows
    styles = series_styles((mode, simulation_id) for (simulation_id, mode), _ in groups)  # colour: mode
    for (simulation_id, mode), part in groups:
        colour, style = styles[(mode, simulation_id)]
        name = f"{mode} · {labels.get(simulation_id, simulation_id)}" if several else mode
        line = {"color": f"C{colour}", "linestyle": dash(style) if several else "-"}
        ax_cdf.step(part["latency_ms"], part["fraction"], where="post", label=name, **line)
        # 1 - CDF reaches 0 at the slowest query; stop one short so log scale can show it.
        tail = 1 - part["fraction"].to_numpy()
        ax_tail.step(part["latency_ms"].to_numpy()[:-1], tail[:-1], where="post", label=name, **line)
    ax_cdf.set(xlabel="latency (ms)", ylabel="measured queries answered (fraction)", xscale="log", ylim=(0, 1.01),
               title="Latency CDF" + (" per simulation" if several else ""))
    ax_tail.set(xlabel="latency (ms)", ylabel="fraction of queries slower (1 - CDF)", xscale="log", yscale="log",
                title="Latency tail" + (" per simulation" if several else ""))
    for ax in (ax_cdf, ax_tail):
        _plain_log_ticks(ax.xaxis)
        ax.grid(alpha=0.3, which="both")
    _legend_below(fig, ax_cdf, 2 if several else 4)
    return _fit_legends(fig)


def instance_figure(run: pd.Series, predictions: pd.DataFrame, decode: pd.Series,
                    data_root: Optional[str] = None) -> Figure:
    """One decode as the report's explorer shows it: the k-group, the coded queries, base vs decoded scores.

    ``run`` is the run's row of ``runs``; ``decode`` a row of ``predictions`` (e.g. of
    :func:`analysis.differing_decodes`). The test images and the encoder are rebuilt from the
    run's config (:func:`analysis.instances.run_inputs`), which raises
    :class:`analysis.instances.ImagesUnavailable` when the data are not on this machine.
    """
    from . import instances

    inputs = instances.run_inputs(run, data_root)
    members = np.array(instances.group_members(predictions, run["run_id"]).loc[int(decode["group_id"])], dtype=np.int64)
    images = instances.to_display(inputs.test_x[torch_index(members)], inputs.kind, inputs.mean, inputs.std)
    coded = instances.to_display(instances.coded_queries(inputs, [members])[0], inputs.kind, stretch=True)
    pattern = str(decode.get("pattern", decode["position"]))
    down = {int(v) for v in pattern.split(",") if v != ""}
    workers = list(range(inputs.k, inputs.k + len(coded))) if inputs.systematic else list(range(len(coded)))
    tiles = len(images) + len(coded)
    fig = Figure(figsize=(max(6.0, 1.3 * tiles), 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, tiles, height_ratios=[1, 1.1])
    for slot, image in enumerate(images):
        ax = fig.add_subplot(grid[0, slot])
        ax.imshow(image, interpolation="nearest")
        rebuilt = slot == int(decode["position"])
        ax.set_title(("rebuilt " if rebuilt else "") + f"slot {slot}\n#{members[slot]}", fontsize=8,
                     color="C0" if rebuilt else ("0.5" if inputs.systematic and slot in down else "k"))
        ax.set_xticks([])
        ax.set_yticks([])
        if rebuilt:
            for spine in ax.spines.values():
                spine.set(color="C0", linewidth=2.5)
    for j, image in enumerate(coded):
        ax = fig.add_subplot(grid[0, len(images) + j])
        ax.imshow(image, interpolation="nearest", alpha=0.35 if workers[j] in down else 1.0)
        ax.set_title(f"worker {workers[j]}\n(coded{', unavailable' if workers[j] in down else ''})", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    scores = fig.add_subplot(grid[1, :])
    base, decoded = instances.top5(decode, "base"), instances.top5(decode, "decoded")
    classes = list(dict.fromkeys([c for c, _ in base] + [c for c, _ in decoded]))
    x = np.arange(len(classes))
    scores.bar(x - 0.2, [dict(base).get(c, 0) * 100 for c in classes], 0.4, label="base model")
    scores.bar(x + 0.2, [dict(decoded).get(c, 0) * 100 for c in classes], 0.4, label="decoded")
    scores.set_xticks(x, [f"{c}{' (true)' if c == int(decode['label']) else ''}" for c in classes])
    what = "top-5" if len(base) > 1 else "top-1"
    scores.set(xlabel="class", ylabel=f"softmax probability (%), {what}", ylim=(0, 100),
               title=f"{decode.get('outcome', '')} — KL(base ‖ decoded) {float(decode['kl_base_decoded']):.3g} nats".strip(" —"))
    _legend_below(fig, scores, 2)
    return _fit_legends(fig)


def sweep_figure(tail: pd.DataFrame, target_ms: float) -> Figure:
    """p99.9 vs offered rate per mode, its 95% interval as a band (one panel per sweep x k x r x straggler x
    cluster size, the first four)."""
    keys = ["sweep_id", "k", "r", "straggler", "cluster_size"]
    groups = list(tail.groupby(keys, sort=False))[:4]
    fig, axes = _figure(6.4 * max(len(groups), 1), 4.2, max(len(groups), 1))
    axes = list(np.atleast_1d(axes))
    colours = {mode: f"C{n % COLOURS}" for n, mode in enumerate(dict.fromkeys(tail["mode"]))}  # the same in every panel
    for ax, (key, part) in zip(axes, groups):
        for mode, lines in part.groupby("mode", sort=False):
            (line,) = ax.plot(lines["rate"], lines["p999_ms"], marker="o", label=mode, color=colours[mode])
            if lines["p999_ms_lo"].notna().any():  # the 95% interval over the cell's replications
                ax.fill_between(lines["rate"], lines["p999_ms_lo"], lines["p999_ms_hi"], color=line.get_color(), alpha=0.2,
                                linewidth=0)
        ax.axhline(target_ms, color="#999", linestyle="--", linewidth=1, label=f"target {target_ms:g} ms")
        ax.set(xlabel="offered load (queries/s)", ylabel="p99.9 latency (ms)", yscale="log",
               title=f"k={key[1]} r={key[2]}, cluster of {key[4]} replicas\n{key[3]}")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=8, loc="best")
    return _fit_legends(fig)


def service_qq_figure(fits: pd.DataFrame) -> Figure:
    """Q-Q plot of each calibrated tail fit: measured service times above the threshold against the fit's quantiles."""
    fig, axes = _figure(5.2, 4.2, 1)
    ax = np.atleast_1d(axes)[0]
    low, high = np.inf, 0.0
    for row in fits.itertuples(index=False):
        points = np.asarray(row.qq_ms, dtype=float)
        if not len(points):
            continue
        ax.plot(points[:, 1], points[:, 0], marker="o", linestyle="none", markersize=3,
                label=f"{row.sweep_id[-13:]} batch {row.batch_size} (KS {row.ks:.3f})")
        low, high = min(low, points.min()), max(high, points.max())
    if high > 0:
        ax.plot([low, high], [low, high], color="#999", linewidth=1, label="y = x")
    ax.set(xlabel="fitted tail quantile (ms)", ylabel="measured service time (ms)", title="service-time tail fit (Q-Q)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="best")
    return _fit_legends(fig)
