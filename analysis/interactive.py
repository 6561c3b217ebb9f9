"""Interactive charts of the report: Plotly figure specs (plain dicts) built from the analysis tables.

The page draws them with the ``plotly.min.js`` that the ``plotly`` package ships, copied once
into the report folder (no network needed). Hover shows values with units; clicking a legend
entry toggles its series. Legends sit outside the plotting area (above it, or to its right) but
inside the chart, never over data, and charts take the width of the page. Lines that differ in
more than one way (a mode in several simulations or sweep cells) take the mode's colour and a dash
of their own (:func:`analysis.figures.series_styles`): no two share both.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

from .tables import ErasureBreakdown

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]
MAX_POINTS = 2000  # per CDF line: enough for the eye, small enough for a 72-run page


def plotly_js() -> Path:
    """The standalone ``plotly.min.js`` of the installed ``plotly`` package."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise FileNotFoundError(f"plotly {plotly.__version__} ships no {path}")
    return path


def _legend_rows(names: List[str], width: int = 480) -> int:
    """Rows a horizontal legend of ``names`` takes in a chart about ``width`` pixels wide (7 px a character)."""
    rows, used = 1, 0
    for name in names:
        entry = 40 + 7 * len(name)
        if used and used + entry > width:
            rows, used = rows + 1, 0
        used += entry
    return rows


def _layout(xtitle: str, ytitle: str, height: int = 380, legend: str = "top",
            names: Optional[List[str]] = None, **extra) -> dict:
    """The title goes above the chart in the page (``title`` key of the spec), so the top margin holds only the legend."""
    top = 12 + 22 * _legend_rows(names or []) if legend == "top" else 16
    layout = {
        "height": height + top,
        "margin": {"l": 64, "r": 16, "t": top, "b": 56},
        "xaxis": {"title": {"text": xtitle}, "automargin": True},
        "yaxis": {"title": {"text": ytitle}, "automargin": True},
        "hovermode": "closest",
        "font": {"family": "system-ui, sans-serif", "size": 12},
        "paper_bgcolor": "white", "plot_bgcolor": "white",
    }
    if legend == "top":  # above the plotting area, left-aligned: never over a bar or a line
        layout["legend"] = {"orientation": "h", "x": 0, "xanchor": "left", "y": 1.0, "yanchor": "bottom"}
    else:  # to the right of the plotting area (many series): scrolls in place when long
        layout["legend"] = {"x": 1.02, "xanchor": "left", "y": 1, "yanchor": "top", "font": {"size": 11}}
    for axis in ("xaxis", "yaxis"):
        layout[axis].update({"gridcolor": "#e6e6e6", "zerolinecolor": "#cccccc", "linecolor": "#999", "showline": True})
        layout[axis].update(extra.pop(axis, {}))
    layout.update(extra)
    return layout


def _pct(values) -> list:
    return [None if v is None or v != v else round(float(v) * 100, 3) for v in values]


def accuracy_chart(table: pd.DataFrame, labels: Dict[str, str]) -> Optional[dict]:
    """Available vs degraded-mode accuracy per completed run (and at 2 and 3 erasures when recorded)."""
    done = table[table["status"] == "COMPLETED"]
    if done.empty:
        return None
    names = [labels.get(r, r) for r in done["run_id"]]
    series = [("available_accuracy", "available (base model)"), ("degraded_accuracy", "degraded mode (1 unavailable)")]
    series += [(f"degraded_accuracy_e{e}", f"degraded mode ({e} unavailable)") for e in (2, 3)
               if f"degraded_accuracy_e{e}" in done and done[f"degraded_accuracy_e{e}"].notna().any()]
    data = [{
        "type": "bar", "name": name, "x": names, "y": _pct(done[column]), "customdata": done["run_id"].tolist(),
        "marker": {"color": PALETTE[n % len(PALETTE)]},
        "hovertemplate": "%{x}<br>%{customdata}<br>" + name + ": %{y:.1f} %<extra></extra>",
    } for n, (column, name) in enumerate(series)]
    many = len(done) > 12  # tick labels would crowd the bars out: hover names each run
    xaxis = {"showticklabels": False} if many else {"type": "category"}
    return _chart("chart-accuracy", "Available vs degraded-mode accuracy", data,
                  _layout(f"{len(done)} runs (hover a bar for its run)" if many else "run", "test top-1 accuracy (%)",
                          height=380, names=[d["name"] for d in data], barmode="group", yaxis={"range": [0, 100]},
                          xaxis=xaxis))


def _chart(chart_id: str, title: str, data: List[dict], layout: dict) -> dict:
    # A legend beside the plot (many runs) needs the page's width; the report gives such charts a row each.
    return {"id": chart_id, "title": title, "data": [_plain_text_trace(trace) for trace in data], "layout": layout,
            "wide": layout["legend"].get("x") == 1.02}


_OWN_MARKUP = ("<br>", "<extra></extra>")  # the only tags the charts' hover templates write themselves


def _plain(text: str) -> str:
    """A stored string as Plotly shows it: as text. Plotly reads a few HTML tags in labels (an
    ``<a href>`` there becomes a live link), so ``<``, ``>`` and ``&`` are written as entities."""
    return html.escape(text, quote=False)


def _plain_template(template: str) -> str:
    """A hover template whose names came from stored strings: escaped, except the charts' own tags."""
    escaped = _plain(template)
    for tag in _OWN_MARKUP:
        escaped = escaped.replace(_plain(tag), tag)
    return escaped


def _plain_text_trace(trace: dict) -> dict:
    """Every string a trace shows (legend name, category labels, custom data in the hover) as plain text."""
    out = dict(trace)
    for key in ("name", "legendgroup"):
        if isinstance(out.get(key), str):
            out[key] = _plain(out[key])
    for key in ("x", "y", "customdata", "text"):
        if isinstance(out.get(key), list):
            out[key] = [_plain(v) if isinstance(v, str) else v for v in out[key]]
    if isinstance(out.get("hovertemplate"), str):
        out["hovertemplate"] = _plain_template(out["hovertemplate"])
    return out


def _colors(run_ids) -> Dict[str, str]:
    return {r: PALETTE[n % len(PALETTE)] for n, r in enumerate(dict.fromkeys(run_ids))}


def curves_charts(curves: pd.DataFrame, labels: Dict[str, str], loss: Optional[str]) -> List[dict]:
    """Loss per epoch (train dotted, validation solid; log scale) and accuracy per epoch, one colour per run."""
    colors = _colors(curves["run_id"])
    loss_data, acc_data = [], []
    # Few runs: one legend entry per line. Many: one per run (the line styles are in the title); a
    # click on it toggles all of the run's lines (legendgroup).
    many = curves["run_id"].nunique() > 3
    for run_id, run in curves.groupby("run_id", sort=False):
        name, color = labels.get(run_id, run_id), colors[run_id]
        for n, (split, dash) in enumerate((("val", "solid"), ("train", "dot"))):
            part = run[run["split"] == split]
            if "loss" in part and part["loss"].notna().any():
                loss_data.append({"type": "scatter", "mode": "lines", "name": name if many else f"{name} ({split})",
                                  "legendgroup": run_id, "showlegend": not many or n == 0,
                                  "x": part["epoch"].tolist(), "y": part["loss"].round(6).tolist(),
                                  "line": {"color": color, "dash": dash},
                                  "hovertemplate": f"{name} {split}<br>epoch %{{x}}: %{{y:.4g}}<extra></extra>"})
        for n, (split, column, dash, what) in enumerate((("val", "reconstruction_top1", "solid", "val reconstruction"),
                                                         ("test", "overall_top1", "dash", "test degraded-mode"))):
            part = run[run["split"] == split]
            if column in part and part[column].notna().any():
                acc_data.append({"type": "scatter", "mode": "lines", "name": name if many else f"{name} {what}",
                                 "legendgroup": run_id, "showlegend": not many or n == 0,
                                 "x": part["epoch"].tolist(), "y": _pct(part[column]),
                                 "line": {"color": color, "dash": dash},
                                 "hovertemplate": f"{name} {what}<br>epoch %{{x}}: %{{y:.1f}} %<extra></extra>"})
    from parity_ray.losses import loss_units  # torch: imported when a loss curve is drawn

    unit = loss_units(loss or "")
    legend = "right" if many else "top"
    return [
        _chart("chart-loss", "Parity-model loss (train dotted, validation solid)", loss_data,
               _layout("epoch", f"{loss or 'training'} loss ({unit})", legend=legend,
                       names=[d["name"] for d in loss_data], yaxis={"type": "log"})),
        _chart("chart-curves", "Reconstruction (solid) and degraded-mode (dashed) accuracy", acc_data,
               _layout("epoch", "top-1 accuracy (%)", legend=legend, names=[d["name"] for d in acc_data],
                       yaxis={"range": [0, 100]})),
    ]


def erasure_charts(breakdown: ErasureBreakdown, labels: Dict[str, str]) -> List[dict]:
    """Decoded accuracy by true class and by erased position, and the distribution of KL(base ‖ decoded)."""
    runs = list(dict.fromkeys(breakdown.by_class["run_id"]))
    colors = _colors(runs)
    legend = "right" if len(runs) > 3 else "top"
    by_class, by_position, kl = [], [], []
    positions = breakdown.by_position
    for run_id in runs:
        name, color = labels.get(run_id, run_id), colors[run_id]
        cls = breakdown.by_class[breakdown.by_class["run_id"] == run_id]
        by_class.append({"type": "bar", "name": name, "legendgroup": run_id, "x": cls["label"].astype(str).tolist(),
                         "y": _pct(cls["degraded_accuracy"]), "marker": {"color": color},
                         "customdata": cls["decodes"].tolist(),
                         "hovertemplate": f"{name}<br>class %{{x}}: %{{y:.1f}} % of %{{customdata}} decodes<extra></extra>"})
        pos = positions[positions["run_id"] == run_id].groupby("position").agg(
            acc=("degraded_accuracy", "mean"), decodes=("decodes", "sum")).reset_index()
        by_position.append({"type": "bar", "name": name, "legendgroup": run_id,
                            "x": [f"slot {p}" for p in pos["position"]], "y": _pct(pos["acc"]),
                            "marker": {"color": color}, "customdata": pos["decodes"].tolist(),
                            "hovertemplate": f"{name}<br>%{{x}}: %{{y:.1f}} % of %{{customdata}} decodes<extra></extra>"})
    values = breakdown.instances["mean_kl"].clip(lower=1e-6)
    if len(values):
        edges = np.logspace(np.log10(values.min()), np.log10(max(values.max(), values.min() * 10)), 31)
        centers = np.sqrt(edges[:-1] * edges[1:])
        for run_id in runs:
            name = labels.get(run_id, run_id)
            counts, _ = np.histogram(values[breakdown.instances["run_id"] == run_id], bins=edges)
            kl.append({"type": "scatter", "mode": "lines", "line": {"shape": "hvh", "color": colors[run_id]},
                       "name": name, "legendgroup": run_id, "x": [float(f"{c:.4g}") for c in centers],
                       "y": counts.tolist(),
                       "hovertemplate": f"{name}<br>KL ≈ %{{x:.3g}} nats: %{{y}} test images<extra></extra>"})
    names = [labels.get(r, r) for r in runs]
    return [
        _chart("chart-by-class", "Decoded accuracy by true class", by_class,
               _layout("true class", "degraded-mode accuracy (%)", legend=legend, names=names, barmode="group",
                       yaxis={"range": [0, 100]}, xaxis={"type": "category"})),
        _chart("chart-by-position", "Decoded accuracy by rebuilt slot", by_position,
               _layout("rebuilt slot in the k-group", "degraded-mode accuracy (%)", legend=legend, names=names,
                       barmode="group", yaxis={"range": [0, 100]})),
        _chart("chart-kl", "Distance of decoded from base outputs", kl,
               _layout("mean KL(base ‖ decoded) per test image (nats)", "test images (count)", legend=legend,
                       names=names, xaxis={"type": "log", "dtick": 1})),
    ]


def _thin(x: np.ndarray, y: np.ndarray) -> tuple:
    if len(x) <= MAX_POINTS:
        return x, y
    keep = np.unique(np.concatenate([np.linspace(0, len(x) - 1, MAX_POINTS).astype(int), [len(x) - 1]]))
    return x[keep], y[keep]


PLOTLY_DASHES = ["solid", "dash", "dot", "dashdot"]


def plotly_dash(index: int) -> str:
    """Plotly line dash number ``index``: as :func:`analysis.figures.dash` (solid, dash, dot, dash-dot, then
    a dash with more dots each), so no two styles repeat however many there are."""
    if index < len(PLOTLY_DASHES):
        return PLOTLY_DASHES[index]
    return ",".join(["6px", "2px"] + ["1px", "2px"] * (index - len(PLOTLY_DASHES) + 2))


def latency_charts(cdf: pd.DataFrame, labels: Optional[Dict[str, str]] = None) -> List[dict]:
    """Latency CDF and its tail (1 - CDF, log-log), one line per simulation x mode (never pooled across
    simulations): the colour names the mode, the dash the simulation (``labels``: simulation id -> text)."""
    from .figures import series_styles

    labels = labels or {}
    several = cdf["simulation_id"].nunique() > 1
    groups = list(cdf.groupby(["simulation_id", "mode"], sort=False))
    styles = series_styles((mode, simulation_id) for (simulation_id, mode), _ in groups)  # colour: mode
    cdf_data, tail_data = [], []
    for (simulation_id, mode), part in groups:
        name = f"{mode} · {labels.get(simulation_id, simulation_id)}" if several else mode
        colour, style = styles[(mode, simulation_id)]
        line = {"shape": "hv", "color": PALETTE[colour], "dash": plotly_dash(style)}
        x, y = _thin(part["latency_ms"].to_numpy(dtype=float), part["fraction"].to_numpy(dtype=float))
        cdf_data.append({"type": "scatter", "mode": "lines", "line": dict(line), "name": name,
                         "legendgroup": name, "x": np.round(x, 3).tolist(), "y": np.round(y, 5).tolist(),
                         "hovertemplate": f"{name}<br>{simulation_id}<br>%{{y:.1%}} answered within %{{x:.1f}} ms<extra></extra>"})
        tail = 1 - y
        tail_data.append({"type": "scatter", "mode": "lines", "line": dict(line), "name": name,
                          "legendgroup": name, "x": np.round(x[:-1], 3).tolist(), "y": np.round(tail[:-1], 6).tolist(),
                          "hovertemplate": f"{name}<br>{simulation_id}<br>%{{y:.2%}} slower than %{{x:.1f}} ms<extra></extra>"})
    names = [d["name"] for d in cdf_data]
    legend = "right" if len(names) > 6 else "top"
    return [
        _chart("chart-latency-cdf", "Latency CDF" + (" per simulation" if several else ""), cdf_data,
               _layout("latency (ms)", "measured queries answered (fraction)", legend=legend, names=names,
                       xaxis={"type": "log"}, yaxis={"range": [0, 1.01]})),
        _chart("chart-latency-tail", "Latency tail" + (" per simulation" if several else ""), tail_data,
               _layout("latency (ms)", "fraction of queries slower (1 - CDF)", legend=legend, names=names,
                       xaxis={"type": "log"}, yaxis={"type": "log", "dtick": 1})),
    ]


SYMBOLS = ["circle", "square", "diamond", "triangle-up", "x", "cross", "triangle-down", "star", "hexagon", "pentagon"]


def sweep_charts(tail: pd.DataFrame, target_ms: float) -> List[dict]:
    """p99.9 vs rate, one line per mode (and per sweep x k x r x straggler x cluster size when several)."""
    from .figures import series_styles

    keys = ["sweep_id", "k", "r", "straggler", "cluster_size"]
    several = tail.groupby(keys).ngroups > 1
    groups = list(tail.groupby(keys + ["mode"], sort=False))
    # Colour by mode (few), dash and marker by the other axes: no two series share colour and dash.
    styles = series_styles((key[-1], key[:-1]) for key, _ in groups)
    data = []
    for key, part in groups:
        name = f"{key[-1]} (k={key[1]} r={key[2]}, cluster {key[4]}, {key[3]})" if several else key[-1]
        index, style = styles[(key[-1], key[:-1])]
        colour = PALETTE[index]
        trace = {"type": "scatter", "mode": "lines+markers", "name": name,
                 "line": {"color": colour, "dash": plotly_dash(style)},
                 "marker": {"symbol": SYMBOLS[style % len(SYMBOLS)], "color": colour},
                 "x": part["rate"].round(3).tolist(), "y": part["p999_ms"].round(3).tolist(),
                 "hovertemplate": f"{name}<br>%{{x:g}} qps: p99.9 %{{y:.1f}} ms<extra></extra>"}
        if "p999_ms_lo" in part and part["p999_ms_lo"].notna().all():  # the 95% interval as error bars
            trace["error_y"] = {"type": "data", "symmetric": False, "color": colour,
                                "array": (part["p999_ms_hi"] - part["p999_ms"]).round(3).tolist(),
                                "arrayminus": (part["p999_ms"] - part["p999_ms_lo"]).round(3).tolist()}
        data.append(trace)
    if len(tail):
        rates = tail["rate"]
        data.append({"type": "scatter", "mode": "lines", "name": f"target {target_ms:g} ms",
                     "line": {"color": "#999", "dash": "dash"}, "x": [float(rates.min()), float(rates.max())],
                     "y": [target_ms, target_ms], "hoverinfo": "skip"})
    names = [d["name"] for d in data]
    return [_chart("chart-sweep-tail", "p99.9 vs rate per mode (simulated)", data,
                   _layout("offered load (queries/s)", "p99.9 latency (ms)", legend="right" if len(names) > 6 else "top",
                           names=names, yaxis={"type": "log"}))]
