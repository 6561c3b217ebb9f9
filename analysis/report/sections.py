"""The report page's HTML: one builder per section (accuracy, boxes, codes, lineage, curves, erasures,
latency, sweeps, explorer, compare), the header, the navigation and the page template."""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from typing import Dict, List, Optional, Tuple

import pandas as pd

from .. import figures, instances, interactive, tables
from .formatting import _note, _pct, _seconds, _table

VERSION_KEYS = ("parity_ray", "python", "torch", "ray", "pandas", "pyarrow")


def _header(loaded, experiment: str, experiments: Optional[List[Tuple[str, str]]] = None) -> str:
    runs = loaded.runs
    status = ", ".join(f"{html.escape(k)} {v}" for k, v in runs["status"].value_counts().sort_index().items())
    spaces = ", ".join(sorted(runs["space"].dropna().astype(str).unique())) if "space" in runs else ""
    if experiments:
        counts = runs["experiment"].astype(str).value_counts()
        where = "<br>".join(f"<b>{html.escape(name)}</b>: {html.escape(path)} ({int(counts.get(name, 0))} runs)"
                            for path, name in experiments)
        rows = [("experiments", f'<span id="experiment-list">{where}</span>')]
    else:
        rows = [("experiment", html.escape(experiment))]
    rows += [
        ("generated", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("runs", f"{len(runs)} ({status})"),
        ("search space", html.escape(spaces or "—")),
        ("base models", str(len(loaded.base_models))),
        ("simulations", str(loaded.simulations["simulation_id"].nunique()) if not loaded.simulations.empty else "0"),
        ("versions", html.escape(_versions(runs))),
    ]
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    title = f"report of {len(experiments)} experiments" if experiments else "experiment report"
    return f'<header id="top"><h1>Parity models: {title}</h1><dl id="experiment-header">{items}</dl></header>'


def _versions(runs: pd.DataFrame) -> str:
    """Library versions of the runs (the first recorded set; ``mixed`` notes runs that differ)."""
    recorded = runs["versions"].dropna().unique() if "versions" in runs else []
    if not len(recorded):
        return "not recorded"
    first = json.loads(recorded[0])
    text = ", ".join(f"{k} {first[k]}" for k in VERSION_KEYS if first.get(k))
    return text + (" (runs differ; see runs.parquet)" if len(recorded) > 1 else "")


def _completed(loaded) -> Tuple[pd.DataFrame, Dict[str, str]]:
    done = loaded.runs[loaded.runs["status"] == "COMPLETED"]
    return done, tables.run_labels(done)


def _with_experiment(table: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """``table`` (one row per run) with the run's experiment as its first column."""
    return table.assign(experiment=table["run_id"].map(dict(zip(runs["run_id"], runs["experiment"].astype(str)))))[
        ["experiment"] + [c for c in table.columns if c != "experiment"]]


def _accuracy_section(loaded, figure, several: bool = False) -> str:
    table = tables.degraded_accuracy_table(loaded.runs)
    extra = [c for c in loaded.runs.columns if c.startswith("degraded_accuracy_e")]
    if extra:
        table = table.merge(loaded.runs[["run_id"] + extra], on="run_id", how="left")
    shown = table.drop(columns=["degraded_top5", "best_epoch"])
    if several:
        shown = _with_experiment(shown, loaded.runs).sort_values(["experiment"], kind="stable")
    order = [c for c in shown.columns if c not in ("run_id", "note")] + ["run_id", "note"]
    parts = [
        '<section id="accuracy"><h2>Degraded-mode accuracy</h2>',
        "<p><b>Available</b> accuracy is the base model's own test top-1 accuracy; <b>degraded-mode</b> accuracy is "
        "the test top-1 accuracy of outputs rebuilt by the decoder when one of the k queries' replicas is unavailable "
        "(best epoch by validation reconstruction). <b>Drop</b> is available minus degraded, in percentage points. "
        "Runs that did not complete are listed with their status and reason.</p>",
        _table(shown[order], "degraded-accuracy-table", wrap=("note",)),
    ]
    if (table["status"] == "COMPLETED").any():
        _, labels = _completed(loaded)
        parts.append(figure("accuracy.png", figures.degraded_accuracy_figure(table),
                            [interactive.accuracy_chart(table, labels)]))
    return "\n".join(parts) + "</section>"


def _boxes_section(loaded, boxes: pd.DataFrame) -> str:
    """Regression runs: localisation accuracy (IoU >= 0.75 with the true box), mean IoU, agreement with F's box."""
    if boxes.empty:
        return ""
    rows = []
    for (run_id, erasures), group in boxes.groupby(["run_id", "erasures"], sort=True):
        rows.append({"run_id": run_id, "erasures": int(erasures), "decodes": len(group),
                     "degraded_accuracy": float((group["iou_decoded_true"] >= 0.75).mean()),
                     "base_accuracy": float((group["iou_base_true"] >= 0.75).mean()),
                     "agreement_with_base": float((group["iou_decoded_base"] >= 0.75).mean()),
                     "mean_iou_decoded_true": float(group["iou_decoded_true"].mean()),
                     "mean_iou_base_true": float(group["iou_base_true"].mean())})
    return "\n".join([
        '<section id="boxes"><h2>Box localisation (regression runs)</h2>',
        "<p>Outputs are boxes (x, y, w, h). A rebuilt box counts as correct when its IoU with the true box is at least "
        "0.75 (<b>degraded</b> accuracy; <b>base</b>: the base model's own box); <b>agreement</b> is IoU &ge; 0.75 with "
        "the base model's box. Mean IoU is shown beside them. These runs have no classes: the class tables leave them "
        "out; the <a href=\"#explorer\">instance explorer</a> shows their decodes with the boxes drawn over the "
        "images.</p>",
        _table(pd.DataFrame(rows), "box-localization-table"),
        "</section>",
    ])


def _codes_section(loaded, several: bool = False) -> str:
    table = tables.code_comparison_table(loaded.runs)
    if several and not table.empty:
        table = _with_experiment(table, loaded.runs)
    if table.empty or table.groupby(tables.CODE_CELL).size().max() < 2 and table["code_family"].nunique() < 2:
        return ""  # one code per cell: nothing to compare
    return "\n".join([
        '<section id="codes"><h2>Codes at equal redundancy</h2>',
        "<p>Every code of each (dataset, model, k, r) cell side by side, grouped by redundancy r/k and code family. "
        "<b>Degraded</b> accuracy scores only the outputs the decoder rebuilt under e unavailable workers (a "
        "systematic code: the missing queries' outputs; a non-systematic code: all k); <b>all</b> scores every answer "
        "of the group as a client receives it; <b>all_accuracy_e0</b> is every answer through the code with every worker "
        "back, what the code costs when nothing failed (a non-systematic code decodes every answer even then). "
        "<b>parity_arch</b>, <b>parity_params</b> and <b>parity_flops</b> say what runs on each coded query and what it "
        "costs (FLOPs per coded query, a multiply-add counting 2): a larger parity model buys its accuracy with them. "
        "<b>best</b> marks the winner of each cell, chosen on validation accuracy (the test figures are shown). "
        "<b>below_base_rate</b> names the e at which rebuilt answers are less accurate than always answering the most "
        "frequent class (<b>majority_accuracy</b>). One table per base architecture.</p>",
        *_tables_by_base(table),
        "</section>",
    ])


def _tables_by_base(table: pd.DataFrame) -> List[str]:
    """The comparison grouped by base architecture: a heading naming the dataset and F, then its codes."""
    groups = list(table.groupby(["dataset", "model"], sort=False))
    if len(groups) == 1:
        return [_table(table.drop(columns=["run_id"]), "code-comparison-table")]
    out = []
    for i, ((dataset, model), rows) in enumerate(groups):
        out.append(f'<h3 class="base-architecture">{html.escape(str(dataset))} · F = {html.escape(str(model))}</h3>')
        out.append(_table(rows.drop(columns=["run_id"]), "code-comparison-table" if i == 0 else f"code-comparison-table-{i}"))
    return out


def _lineage_section(loaded, manifest: dict, several: bool = False) -> str:
    """dataset -> base model -> code family -> (k, r) -> run, as nested lists with each node's key metrics
    (under each experiment first, in a report of several)."""
    table = instances.lineage(loaded.runs, loaded.base_models)
    explorable = {r["run_id"]: r["i"] for r in manifest["runs"]}
    # What tells two runs of one (k, r) cell apart besides the coder and loss (a learning rate, ...).
    extra = tables.varying_keys(loaded.runs, tables.EXTRA_KEYS)
    settings = {row["run_id"]: ", ".join(f"{key}={row[key]}" for key in extra) for _, row in loaded.runs.iterrows()}
    open_cells = " open" if len(table) <= 24 else ""  # a big grid starts folded at (k, r): one line per cell
    head = ('<section id="lineage"><h2>Lineage</h2><p>Each base model with the runs derived from it'
            + (", under the experiment that trained them" if several else "") + '. A run\'s '
            '<b>degraded</b> accuracy is its decoded test top-1 (one unavailable worker unless marked e=2, e=3), '
            '<b>drop</b> the points lost against its base model, <b>recon</b> how often the decoded answer '
            'equals the base model\'s. <i>explore</i> opens the run in the instance explorer.</p>')
    if table.empty:
        return head + _note("No run in this experiment.", "no-lineage") + "</section>"
    out = ['<ul class="tree" id="lineage-tree">']
    if several:
        experiment_of = dict(zip(loaded.runs["run_id"], loaded.runs["experiment"].astype(str)))
        table = table.assign(_experiment=table["run_id"].map(experiment_of))
        for name, by_experiment in table.groupby("_experiment", sort=True):
            out.append(f'<li><details open><summary><span class="node experiment">{html.escape(str(name))}</span>'
                       f'<span class="metrics">experiment · {len(by_experiment)} run{"s" if len(by_experiment) != 1 else ""}'
                       f'</span></summary><ul>')
            out += _lineage_datasets(by_experiment, explorable, settings, open_cells)
            out.append("</ul></details></li>")
    else:
        out += _lineage_datasets(table, explorable, settings, open_cells)
    out.append("</ul>")
    return head + "".join(out) + "</section>"


def _lineage_datasets(table: pd.DataFrame, explorable: Dict[str, int], settings: Dict[str, str],
                      open_cells: str) -> List[str]:
    out = []
    for dataset, by_dataset in table.groupby("dataset", sort=False):
        out.append(f'<li><details open><summary><span class="node dataset">{html.escape(str(dataset))}</span>'
                   f'<span class="metrics">{len(by_dataset)} run{"s" if len(by_dataset) != 1 else ""}</span></summary><ul>')
        for base_id, by_base in by_dataset.groupby(by_dataset["base_model_id"].fillna(""), sort=False):
            first = by_base.iloc[0]
            if base_id:
                metrics = (f'{html.escape(str(first["arch"]))} · test {_pct(first["base_test_accuracy"])} · '
                           f'trained in {_seconds(first["base_train_seconds"])}')
                title = html.escape(str(base_id))
            else:
                metrics, title = "runs that never reached a base model", "no base model"
            out.append(f'<li><details open><summary><span class="node base">{title}</span>'
                       f'<span class="metrics">{metrics}</span></summary><ul>')
            for family, by_family in by_base.groupby("code_family", sort=False):
                best = by_family["degraded_accuracy"].max()
                out.append(f'<li><details open><summary><span class="node family">{html.escape(str(family))}</span>'
                           f'<span class="metrics">best degraded {_pct(best)}</span></summary><ul>')
                for (k, r), cell in by_family.groupby(["k", "r"], sort=False):
                    count = f'{len(cell)} run{"s" if len(cell) != 1 else ""}'
                    out.append(f'<li><details{open_cells}><summary><span class="node kr">k={int(k)}, r={int(r)}</span>'
                               f'<span class="metrics">redundancy {int(r) / int(k):.2f} · {count} · best degraded '
                               f'{_pct(cell["degraded_accuracy"].max())}</span></summary><ul>')
                    for run in cell.itertuples(index=False):
                        out.append("<li>" + _lineage_run(run._asdict(), explorable, settings.get(run.run_id, ""))
                                   + "</li>")
                    out.append("</ul></details></li>")
                out.append("</ul></details></li>")
            out.append("</ul></details></li>")
        out.append("</ul></details></li>")
    return out


def _lineage_run(run: dict, explorable: Dict[str, int], settings: str = "") -> str:
    name = f'{run["encoder"]} / {run["decoder"]}, {run["loss"]} loss' + (f", {settings}" if settings else "")
    if run["status"] != "COMPLETED":
        return (f'<span class="node run failed">{html.escape(name)}</span><span class="metrics">'
                f'<span class="status">{html.escape(str(run["status"]))}</span></span>')
    levels = [f"degraded {_pct(run['degraded_accuracy'])}"]
    levels += [f"e={e} {_pct(run[f'degraded_accuracy_e{e}'])}" for e in (2, 3)
               if run.get(f"degraded_accuracy_e{e}") is not None and run.get(f"degraded_accuracy_e{e}") == run.get(f"degraded_accuracy_e{e}")]
    drop = run["accuracy_drop"]
    metrics = " · ".join(levels + [
        "drop —" if drop != drop else f"drop {drop * 100:.1f} pp",
        f"recon {_pct(run['reconstruction_accuracy'])}",
        f"{int(run['epochs_done']) if run['epochs_done'] == run['epochs_done'] else 0} epochs",
        f"{_seconds(run['train_seconds'])}",
    ] + _parity_cost(run))
    link = ""
    if run["run_id"] in explorable:
        link = f' <a class="explore" href="#explore={explorable[run["run_id"]]}">explore</a>'
    return (f'<span class="node run" title="{html.escape(run["run_id"])}">{html.escape(name)}</span>'
            f'<span class="metrics">{metrics}</span>{link}')


def _parity_cost(run: dict) -> List[str]:
    """``parity lenet5-wide (0.97 M params, 10.5 MFLOPs per coded query)``: the worker on coded queries and its cost."""
    arch, params, flops = run.get("parity_arch"), run.get("parity_params"), run.get("parity_flops")
    if not isinstance(arch, str):
        return []
    worker = "F" if run.get("worker") == "base" else "parity"
    cost = (f" ({_count(params)} params, {_count(flops)}FLOPs per coded query)"
            if params == params and params is not None and flops == flops and flops is not None else "")
    return [f"{worker} {html.escape(arch)}{cost}"]


def _count(value) -> str:
    """12.3 M / 456 k / 789: a parameter or FLOP count at a glance."""
    value = float(value)
    for scale, unit in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if value >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.0f} "


def _curves_section(loaded, figure) -> str:
    head = '<section id="learning-curves"><h2>Learning curves</h2>'
    if loaded.epochs.empty:
        return head + _note("No epoch was recorded yet.", "no-epochs") + "</section>"
    done, labels = _completed(loaded)
    losses = loaded.runs["loss"].dropna().unique()
    loss = losses[0] if len(losses) == 1 else None
    curves = tables.learning_curves(loaded.epochs)
    fig = figures.learning_curves_figure(curves, labels, loss)
    return (head + "<p>Parity-model training loss per epoch (log scale) and validation reconstruction top-1 "
            "(decoded output agrees with the base model) and test degraded-mode top-1 per epoch. Click a legend "
            "entry to hide or show a run; hover for values.</p>"
            + figure("learning_curves.png", fig, interactive.curves_charts(curves, labels, loss))
            + "</section>")


def _erasure_section(loaded, figure, boxes: bool = False) -> str:
    head = '<section id="erasures"><h2>Erasure breakdown</h2>'
    if loaded.predictions.empty and boxes:
        return head + _note("The runs here predict boxes, not classes: their decodes are scored in the "
                            "<a href=\"#boxes\">box localisation</a> section and shown in the "
                            "<a href=\"#explorer\">instance explorer</a>.", "no-predictions") + "</section>"
    if loaded.predictions.empty:
        return head + _note("No test predictions were recorded (no run completed).", "no-predictions") + "</section>"
    _, labels = _completed(loaded)
    breakdown = tables.erasure_breakdown(loaded.predictions)
    worst = breakdown.by_class.sort_values(["run_id", "degraded_accuracy"]).groupby("run_id").head(3)
    return "\n".join([
        head,
        "<p>Every decode of the test set compared with the base model on the same image: both right, right only "
        "before decoding (<i>lost</i>), right only after (<i>fixed</i>), or both wrong with the same or a different "
        "answer. KL(base ‖ decoded) is in nats. The <a href=\"#explorer\">instance explorer</a> shows the decodes "
        "that differ, image by image.</p>",
        _table(breakdown.agreement, "agreement-table"),
        _table(breakdown.kl, "kl-table"),
        "<h3>By erased position</h3>", _table(breakdown.by_position, "position-table"),
        "<h3>Classes decoded worst (three per run)</h3>", _table(worst, "worst-classes-table"),
        figure("erasures.png", figures.erasure_figure(breakdown, labels), interactive.erasure_charts(breakdown, labels)),
        "</section>",
    ])


def _latency_section(loaded, experiment: str, figure, several: bool = False) -> str:
    head = '<section id="latency"><h2>Serving latency (degraded-mode simulation)</h2>'
    if loaded.simulations.empty and several:
        return head + _note("No serving simulation in these experiments yet: run <code>parity-ray simulate "
                            "--experiment E</code> on one of them to add latency results.", "no-simulations") + "</section>"
    if loaded.simulations.empty:
        return head + _note(
            f"No serving simulation in this experiment yet: run <code>parity-ray simulate --experiment "
            f"{html.escape(experiment)}</code> to add latency results.", "no-simulations") + "</section>"
    cdf = tables.latency_cdf(loaded.queries)
    labels = tables.simulation_labels(loaded.simulations, loaded.queries)
    spread = tables.latency_spread(loaded.simulations)
    repeated = [] if spread.empty else [
        "<p>Repeated simulations (<code>--repeat N</code>: fresh seeds, the modes' order rotated): each tail "
        "figure's median over the repetitions and its range (<code>_min</code>, <code>_max</code>); "
        "<code>gap_ms</code> is p99.9 - p50.</p>",
        _table(spread, "latency-spread-table")]
    return "\n".join([
        head,
        "<p>Every table and chart here is per simulation: one row (or line) per simulation x mode, with the "
        "simulation's served run, rate and straggler beside it; queries of different simulations are never added "
        "up. Within a simulation the modes ran under the same straggler models and load (measured queries, warm-up "
        "left out); failed queries count as wrong and keep a CDF below 1.</p>",
        _table(tables.latency_summary(loaded.simulations), "latency-table"),
        *repeated,
        "<h3>How queries were answered</h3><p>Per simulation x mode: answers from the query's own replica "
        "(<code>direct</code>), rebuilt by the decoder (<code>decoded</code>) or <code>failed</code>.</p>",
        _table(tables.answer_paths(loaded.queries, loaded.simulations), "latency-paths-table"),
        figure("latency_cdf.png", figures.latency_cdf_figure(cdf, labels), interactive.latency_charts(cdf, labels)),
        "</section>",
    ])


def _sweeps_section(loaded, figure) -> str:
    """``parity-ray sweep`` results: p99.9 vs rate per mode, and the cheapest mode meeting a p99.9 target per rate."""
    sweeps = loaded.sweeps
    tail = tables.sweep_tail(sweeps)
    target = tables.sweep_target(sweeps)
    cheapest = tables.cheapest_modes(sweeps, target)
    parts = ['<section id="sweeps"><h2>Sweeps at cluster scale (discrete-event simulation)</h2>',
             f"<p>Simulated serving runs of <code>parity-ray sweep</code>: {sweeps['sweep_id'].nunique()} sweep(s), "
             f"{len(sweeps)} cells. The cheapest mode at each rate (per sweep x k x r x straggler x cluster size) is the "
             f"one sending the fewest requests per query (then the lowest p99.9) whose p99.9 meets {target:g} ms with no "
             f"query failed. Every mode of a cell is given the same cluster: the replicas they deploy differ only by how "
             f"many whole apps fit, so the replica count does not rank them; <em>meeting</em> lists every mode that meets "
             f"the target with its replica count, and <em>equal replicas</em> says whether those counts are the same. "
             f"<em>Meets by interval</em> says whether the winner's p99.9 95% interval lies wholly below the target, or "
             f"straddles it (not distinguishable at that many queries).</p>",
             _table(cheapest, "sweep-cheapest-table")]
    if len(tail):
        parts.append(figure("sweep_p999.png", figures.sweep_figure(tail, target), interactive.sweep_charts(tail, target)))
    parts.append(_table(tail, "sweep-table"))
    fits = tables.service_fits(sweeps)
    if len(fits):  # calibrated service times with a fitted tail: the fit and its quality
        parts.append("<h3>Service-time tail fits</h3><p>Calibrated service times above their p95 follow a fitted "
                     "generalized Pareto tail; the Kolmogorov-Smirnov distance is against the measured exceedances (a "
                     "lognormal fitted to the whole sample, for comparison, beside it).</p>")
        parts.append(_table(fits.drop(columns=["qq_ms"]), "sweep-service-fits"))
        parts.append(figure("sweep_service_qq.png", figures.service_qq_figure(fits), []))
    parts.append("</section>")
    return "\n".join(parts)


NAV = "".join(f'<a href="#{anchor}">{text}</a>' for anchor, text in [
    ("accuracy", "Accuracy"), ("lineage", "Lineage"), ("explorer", "Instance explorer"), ("compare", "Run vs run"),
    ("learning-curves", "Learning curves"), ("erasures", "Erasures"), ("latency", "Latency")])
SWEEPS_NAV = '<a href="#sweeps">Sweeps</a>'  # only when the experiment has tables/sweeps/


def explorer_section(classes: bool = True, boxes: bool = False) -> str:
    """The explorer's controls; those of one task (class decodes, boxes) show while a run of that task is picked."""
    intro = []
    if classes:
        intro.append("""<p>The test decodes whose answer differs from the base model's on the same image: <i>lost by decoding</i> (base right,
decoded wrong), <i>fixed by decoding</i> (base wrong, decoded right) and <i>different mistake</i> (both wrong, with different
answers). Each shows the image beside its k-group partners and the coded queries the encoder built from them (what the parity
workers saw; unavailable workers are struck through), with base vs decoded scores.</p>""")
    if boxes:
        intro.append("""<p id="ex-boxes-intro">Localisation runs (boxes): a box <i>hits</i> when its IoU with the true box is at least 0.75.
The explorer lists the decodes <i>lost by decoding</i> (the base model's box hits, the decoded box misses), <i>fixed by decoding</i>
(the other way round) and those where <i>both miss</i>. Each image shows the true, base and decoded boxes drawn over it (in the
frame of the test images the runs read: the dataset's boxes scaled with their image), its k-group partners with their true and
base boxes, the coded queries, and the IoUs.</p>""")
    task = ' data-task="classification"' if boxes else ""
    controls = ["""<label>Run <select id="ex-run"></select></label>
<label>Outcome <select id="ex-outcome"><option value="">all</option></select></label>"""]
    if classes:
        controls.append(f"""<label{task}>True class <select id="ex-class"><option value="">all</option></select></label>""")
    controls.append("""<label>Rebuilt slot <select id="ex-position"><option value="">all</option></select></label>
<label>Erasure pattern <select id="ex-pattern"><option value="">all</option></select></label>""")
    if classes:
        controls.append(f"""<label{task}>KL from <input id="ex-kl-min" type="number" min="0" step="any" placeholder="0" size="6"> to
<input id="ex-kl-max" type="number" min="0" step="any" placeholder="max" size="6"> nats</label>""")
    if boxes:
        controls.append("""<label data-task="regression">IoU of <select id="ex-iou-which"><option value="iou_dt">decoded vs true box</option>
<option value="iou_bt">base vs true box</option><option value="iou_db">decoded vs base box</option></select>
from <input id="ex-iou-min" type="number" min="0" max="1" step="0.05" placeholder="0" size="5"> to
<input id="ex-iou-max" type="number" min="0" max="1" step="0.05" placeholder="1" size="5"></label>""")
    controls.append("""<label>Test image <input id="ex-test-index" type="number" min="0" step="1" placeholder="any" size="6"></label>
<label>Sort <select id="ex-sort"></select></label>
<button type="button" id="ex-reset">Reset filters</button>""")
    return "\n".join(['<section id="explorer"><h2>Instance explorer</h2>'] + intro + [
        '<div class="controls" id="ex-controls">', "\n".join(controls), "</div>",
        """<p class="status"><span id="ex-status" aria-live="polite">Loading…</span> <span id="ex-count" hidden></span></p>
<p class="note" id="ex-images-note" hidden></p>
<div class="cards" id="ex-list"></div>
<button type="button" id="ex-more" hidden>Show more</button>
</section>"""])


def compare_section(several: bool = False) -> str:
    across = (" The runs may come from different experiments (their names lead the labels): the test images are "
              "joined by their index in the dataset's test split.") if several else ""
    return f"""<section id="compare"><h2>Run vs run</h2>
<p>Two runs on the same test images: which does each image right after decoding? A run gets an image right when most of
its decodes of it (every erasure pattern and slot at the chosen number of unavailable workers) give the true label (for
boxes: hit the true box, IoU &ge; 0.75). The images that flip — right in exactly one run — are listed below.{across}</p>
<div class="controls" id="cmp-controls">
<label>Run A <select id="cmp-a"></select></label>
<label>Run B <select id="cmp-b"></select></label>
<label>Unavailable workers <select id="cmp-e"></select></label>
<label>Show <select id="cmp-side"><option value="flips">all flips</option><option value="only_a">right only in A</option>
<option value="only_b">right only in B</option><option value="both_wrong">wrong in both</option></select></label>
<label id="cmp-class-label">True class <select id="cmp-class"><option value="">all</option></select></label>
<label>Sort <select id="cmp-sort"><option value="gap">largest difference first</option><option value="test">test image</option>
<option value="label">true class</option></select></label>
</div>
<div id="cmp-table"></div>
<p class="status"><span id="cmp-status" aria-live="polite"></span> <span id="cmp-count" hidden></span></p>
<div class="cards compact" id="cmp-list"></div>
<button type="button" id="cmp-more" hidden>Show more</button>
</section>"""


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="generator" content="{generator}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="report.css">
</head>
<body>
<nav id="nav">{nav}</nav>
<main>
{body}
</main>
<script type="application/json" id="pr-manifest">{manifest}</script>
<script type="application/json" id="pr-charts">{charts}</script>
<script src="report.js"></script>
</body>
</html>
"""
