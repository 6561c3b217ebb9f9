"""``parity-ray report``: a static HTML report of an experiment (tables + PNG figures).

The report is a folder (``index.html`` and the figures beside it, linked relatively) that
opens from disk with no server. It is written whole or not at all: locally it is built in a
staging folder next to the target and renamed into place; on S3 the figures are uploaded
first and ``index.html`` last, so a reader never sees an index pointing at missing figures.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import pandas as pd

from parity_ray import storage
from parity_ray.errors import UsageError

from . import figures, tables

GENERATOR = "parity-ray report"  # marks a folder as a report we may replace
VERSION_KEYS = ("parity_ray", "python", "torch", "ray", "pandas", "pyarrow")


def build_report(path: str, out: Optional[str] = None) -> Dict[str, object]:
    """Write the report of the experiment at ``path``; return a summary (``report`` is the index).

    ``out`` (a local folder or ``s3://`` URI) replaces the default ``<path>/report/``.
    Bad input (no experiment, another schema version, an unwritable target) raises
    :class:`UsageError` before anything is written.
    """
    started = time.perf_counter()
    loaded = tables.load(path)
    target = storage.canonical(str(out) if out else storage.join(_experiment_root(str(path)), "report"))
    if storage.is_remote(target):
        with tempfile.TemporaryDirectory(prefix="parity-ray-report-") as staging:
            files = render(loaded, str(path), Path(staging))
            _upload(Path(staging), files, target)
    else:
        files = _publish_local(Path(target), lambda staging: render(loaded, str(path), staging))
    return {
        "report": storage.join(target, "index.html"),
        "experiment": str(path),
        "runs": len(loaded.runs),
        "status": {k: int(v) for k, v in loaded.runs["status"].value_counts().sort_index().items()},
        "simulations": int(loaded.simulations["simulation_id"].nunique()) if not loaded.simulations.empty else 0,
        "figures": [f for f in files if f.endswith(".png")],
        "seconds": round(time.perf_counter() - started, 2),
    }


def format_summary(summary: Dict[str, object]) -> str:
    """The human lines ``parity-ray report`` prints."""
    status = ", ".join(f"{k.lower()} {v}" for k, v in summary["status"].items())
    return "\n".join([
        f"{'experiment':<12}{summary['experiment']}",
        f"{'runs':<12}{summary['runs']}  {status}",
        f"{'simulations':<12}{summary['simulations']}",
        f"{'figures':<12}{', '.join(summary['figures'])}",
        f"{'report':<12}{summary['report']}  ({summary['seconds']:.1f} s)",
    ])


# --------------------------------------------------------------------------- targets


def _experiment_root(path: str) -> str:
    """The experiment folder, also when given its ``tables/`` folder (as ``results.load`` accepts)."""
    stripped = path.rstrip("/")
    if stripped.endswith("/tables") or stripped == "tables":
        if storage.exists(storage.join(stripped, "runs.parquet")):
            return stripped[: -len("tables")].rstrip("/") or "."
    return path


def _check_local_target(target: Path) -> None:
    """Refuse a target we cannot write or must not replace, before any work is done."""
    if target.exists() and not target.is_dir():
        raise UsageError(f"report target '{target}' is a file, not a folder; give a new or empty folder with --out")
    if target.is_dir() and any(target.iterdir()) and not _is_report(target):
        raise UsageError(f"report target '{target}' is a folder holding other files; give a new or empty folder with --out")
    ancestor = target
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"report target '{target}' cannot be created: '{ancestor}' is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"report target '{target}' is not writable: no write permission on '{ancestor}'")


def _is_report(folder: Path) -> bool:
    index = folder / "index.html"
    return index.is_file() and f'content="{GENERATOR}"' in index.read_text(errors="replace")[:2000]


def _publish_local(target: Path, render_into: Callable[[Path], List[str]]) -> List[str]:
    """Render into a staging folder beside ``target``, then swap it in (an old report is replaced)."""
    target = target.expanduser().absolute()
    _check_local_target(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
    except OSError as exc:
        raise UsageError(f"report target '{target}' is not writable: {exc.strerror or exc}") from None
    try:
        files = render_into(staging)
        staging.chmod(0o755)  # mkdtemp makes it private; a report is meant to be shared
        if target.exists():
            # Same filesystem, so both renames are atomic; the old report goes only once the new one is whole.
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / "report")
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
        return files
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _upload(staging: Path, files: List[str], target: str) -> None:
    """Upload a rendered report; index.html last, so it never links to figures not yet there."""
    ordered = sorted(files, key=lambda name: name == "index.html")
    try:
        for name in ordered:
            storage.write_bytes(storage.join(target, name), (staging / name).read_bytes())
    except OSError as exc:
        raise UsageError(f"report target '{target}' is not writable: {exc}") from None


# --------------------------------------------------------------------------- rendering


def render(loaded, experiment: str, folder: Path) -> List[str]:
    """Write ``index.html`` and its figures into ``folder``; return the file names."""
    written: List[str] = []

    def figure(name: str, fig, alt: str) -> str:
        (folder / name).write_bytes(figures.to_png(fig))
        written.append(name)
        width, height = (int(v * 100) for v in fig.get_size_inches())
        return f'<img src="{name}" alt="{html.escape(alt)}" width="{width}" height="{height}">'

    sections = [
        _header(loaded, experiment),
        _accuracy_section(loaded, figure),
        _codes_section(loaded),
        _curves_section(loaded, figure),
        _erasure_section(loaded, figure),
        _latency_section(loaded, experiment, figure),
    ]
    name = Path(_experiment_root(experiment).rstrip("/")).name or experiment
    page = PAGE.format(title=html.escape(f"{name} — parity_ray report"), generator=GENERATOR,
                       body="\n".join(sections), script=IMAGES_LOADED_SCRIPT)
    (folder / "index.html").write_text(page, encoding="utf-8")
    return written + ["index.html"]


def _table(df: pd.DataFrame, table_id: str) -> str:
    """An HTML table; headers get spaces so they can wrap, and missing values show as a dash."""
    shown = df.rename(columns=lambda c: str(c).replace("_", " "))
    for column in shown.columns[shown.dtypes == object]:
        shown[column] = shown[column].where(shown[column].notna(), "—")  # na_rep skips None in object columns
    return shown.to_html(index=False, table_id=table_id, border=0, na_rep="—", escape=True,
                         float_format=lambda v: f"{v:.4f}")


def _note(text: str, note_id: str) -> str:
    return f'<p class="note" id="{note_id}">{text}</p>'


def _header(loaded, experiment: str) -> str:
    runs = loaded.runs
    status = ", ".join(f"{html.escape(k)} {v}" for k, v in runs["status"].value_counts().sort_index().items())
    spaces = ", ".join(sorted(runs["space"].dropna().astype(str).unique())) if "space" in runs else ""
    rows = [
        ("experiment", html.escape(experiment)),
        ("generated", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("runs", f"{len(runs)} ({status})"),
        ("search space", html.escape(spaces or "—")),
        ("base models", str(len(loaded.base_models))),
        ("simulations", str(loaded.simulations["simulation_id"].nunique()) if not loaded.simulations.empty else "0"),
        ("versions", html.escape(_versions(runs))),
    ]
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return f'<header><h1>Parity models: experiment report</h1><dl id="experiment-header">{items}</dl></header>'


def _versions(runs: pd.DataFrame) -> str:
    """Library versions of the runs (the first recorded set; ``mixed`` notes runs that differ)."""
    recorded = runs["versions"].dropna().unique() if "versions" in runs else []
    if not len(recorded):
        return "not recorded"
    first = json.loads(recorded[0])
    text = ", ".join(f"{k} {first[k]}" for k in VERSION_KEYS if first.get(k))
    return text + (" (runs differ; see runs.parquet)" if len(recorded) > 1 else "")


def _accuracy_section(loaded, figure) -> str:
    table = tables.degraded_accuracy_table(loaded.runs)
    shown = table.drop(columns=["degraded_top5", "best_epoch"])
    parts = [
        '<section id="accuracy"><h2>Degraded-mode accuracy</h2>',
        "<p><b>Available</b> accuracy is the base model's own test top-1 accuracy; <b>degraded-mode</b> accuracy is "
        "the test top-1 accuracy of outputs rebuilt by the decoder when one of the k queries' replicas is unavailable "
        "(best epoch by validation reconstruction). Runs that did not complete are listed with their status and reason.</p>",
        _table(shown, "degraded-accuracy-table"),
    ]
    if (table["status"] == "COMPLETED").any():
        parts.append(figure("accuracy.png", figures.degraded_accuracy_figure(table), "available vs degraded-mode accuracy"))
    return "\n".join(parts) + "</section>"


def _codes_section(loaded) -> str:
    table = tables.code_comparison_table(loaded.runs)
    if table.empty or table.groupby(tables.CODE_CELL).size().max() < 2 and table["code_family"].nunique() < 2:
        return ""  # one code per cell: nothing to compare
    return "\n".join([
        '<section id="codes"><h2>Codes at equal redundancy</h2>',
        "<p>Every code of each (dataset, model, k, r) cell side by side, grouped by redundancy r/k and code family. "
        "<b>Degraded</b> accuracy scores only the outputs the decoder rebuilt under e unavailable workers (a "
        "systematic code: the missing queries' outputs; a non-systematic code: all k); <b>all</b> scores every answer "
        "of the group as a client receives it. <b>best</b> marks the winner of each cell (e = 1 degraded accuracy).</p>",
        _table(table.drop(columns=["run_id"]), "code-comparison-table"),
        "</section>",
    ])


def _completed(loaded) -> Tuple[pd.DataFrame, Dict[str, str]]:
    done = loaded.runs[loaded.runs["status"] == "COMPLETED"]
    return done, tables.run_labels(done)


def _curves_section(loaded, figure) -> str:
    head = '<section id="learning-curves"><h2>Learning curves</h2>'
    if loaded.epochs.empty:
        return head + _note("No epoch was recorded yet.", "no-epochs") + "</section>"
    done, labels = _completed(loaded)
    losses = loaded.runs["loss"].dropna().unique()
    fig = figures.learning_curves_figure(tables.learning_curves(loaded.epochs), labels,
                                         losses[0] if len(losses) == 1 else None)
    return (head + "<p>Parity-model training loss per epoch (left, log scale) and, right, validation reconstruction "
            "top-1 (decoded output agrees with the base model) and test degraded-mode top-1 per epoch.</p>"
            + figure("learning_curves.png", fig, "learning curves") + "</section>")


def _erasure_section(loaded, figure) -> str:
    head = '<section id="erasures"><h2>Erasure breakdown</h2>'
    if loaded.predictions.empty:
        return head + _note("No test predictions were recorded (no run completed).", "no-predictions") + "</section>"
    _, labels = _completed(loaded)
    breakdown = tables.erasure_breakdown(loaded.predictions)
    worst = breakdown.by_class.sort_values(["run_id", "degraded_accuracy"]).groupby("run_id").head(3)
    return "\n".join([
        head,
        "<p>Every decode of the test set compared with the base model on the same image: both right, right only "
        "before decoding (<i>lost</i>), right only after (<i>fixed</i>), or both wrong with the same or a different "
        "answer. KL(base ‖ decoded) is in nats.</p>",
        _table(breakdown.agreement, "agreement-table"),
        _table(breakdown.kl, "kl-table"),
        "<h3>By erased position</h3>", _table(breakdown.by_position, "position-table"),
        "<h3>Classes decoded worst (three per run)</h3>", _table(worst, "worst-classes-table"),
        figure("erasures.png", figures.erasure_figure(breakdown, labels), "erasure breakdown"),
        "</section>",
    ])


def _latency_section(loaded, experiment: str, figure) -> str:
    head = '<section id="latency"><h2>Serving latency (degraded-mode simulation)</h2>'
    if loaded.simulations.empty:
        return head + _note(
            f"No serving simulation in this experiment yet: run <code>parity-ray simulate --experiment "
            f"{html.escape(experiment)}</code> to add latency results.", "no-simulations") + "</section>"
    return "\n".join([
        head,
        "<p>Latency per mode under the same straggler models and load (measured queries, warm-up left out); "
        "failed queries count as wrong and keep a CDF below 1.</p>",
        _table(tables.latency_summary(loaded.simulations), "latency-table"),
        figure("latency_cdf.png", figures.latency_cdf_figure(tables.latency_cdf(loaded.queries)), "latency CDF"),
        "</section>",
    ])


# Sets body data-images-loaded / data-images-failed once every <img> settled, so a headless
# browser (or a person's devtools) can tell that every figure loaded from disk.
IMAGES_LOADED_SCRIPT = """
(function () {
  var images = Array.prototype.slice.call(document.images), pending = images.length, loaded = 0, failed = 0;
  function settle(ok) {
    if (ok) { loaded += 1; } else { failed += 1; }
    pending -= 1;
    if (pending === 0) { document.body.dataset.imagesLoaded = loaded; document.body.dataset.imagesFailed = failed; }
  }
  if (!images.length) { document.body.dataset.imagesLoaded = 0; document.body.dataset.imagesFailed = 0; }
  images.forEach(function (img) {
    if (img.complete) { settle(img.naturalWidth > 0); return; }
    img.addEventListener("load", function () { settle(true); });
    img.addEventListener("error", function () { settle(false); });
  });
})();
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="generator" content="{generator}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }}
h1 {{ font-size: 1.6em; }} h2 {{ border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }}
dl {{ display: grid; grid-template-columns: max-content auto; gap: .2em 1em; }} dt {{ font-weight: 600; }}
table {{ border-collapse: collapse; font-size: .8em; margin: 1em 0; display: block; overflow-x: auto; }}
th, td {{ padding: .25em .6em; border-bottom: 1px solid #e4e4e4; text-align: right; white-space: nowrap; }}
th {{ background: #f4f4f4; white-space: normal; vertical-align: bottom; }}
td:first-child, th:first-child {{ text-align: left; }}
#degraded-accuracy-table td:last-child {{ white-space: normal; min-width: 18em; text-align: left; }}
img {{ max-width: 100%; height: auto; display: block; margin: 1em 0; }}
.note {{ background: #fff8e1; border-left: 4px solid #f0b400; padding: .6em 1em; }}
</style>
</head>
<body>
{body}
<script>{script}</script>
</body>
</html>
"""
