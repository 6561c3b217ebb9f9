"""Formatting for the report: values with their units, column headers, HTML tables and notes, and the
terminal summary of ``parity-ray report``."""

from __future__ import annotations

import html
from typing import Dict, Tuple

import numpy as np
import pandas as pd


def format_summary(summary: Dict[str, object]) -> str:
    """The human lines ``parity-ray report`` prints."""
    status = ", ".join(f"{k.lower()} {v}" for k, v in summary["status"].items())
    experiments = summary.get("experiments") or []
    if len(experiments) > 1:
        head = [f"{'experiments' if n == 0 else '':<12}{e['name']}: {e['path']} ({e['runs']} runs)"
                for n, e in enumerate(experiments)]
    else:
        head = [f"{'experiment':<12}{summary['experiment']}"]
    return "\n".join(printable(line) for line in head + [
        f"{'runs':<12}{summary['runs']}  {status}",
        f"{'simulations':<12}{summary['simulations']}",
        f"{'figures':<12}{', '.join(summary['figures'])}",
        f"{'explorer':<12}{summary['explorer_runs']} runs, {summary['thumbnail_sheets']} thumbnail sheets",
        f"{'report':<12}{summary['report']}  ({summary['seconds']:.1f} s)",
    ])


def printable(text: str) -> str:
    """``text`` for a terminal: control characters (escape sequences a stored string may carry) shown
    escaped, as ``\\x1b``, never sent raw."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


PERCENT = ("accuracy", "agreement", "top5", "fraction", "correct")


def _format_value(column: str, value) -> str:
    """Accuracies as percentages, seconds and nats with their unit, counts as integers."""
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA:
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        if any(word in column for word in PERCENT) and "kl" not in column:
            return f"{value * 100:.1f} %"
        if "_kl" in column:
            return f"{value:.3g}"
        if column.endswith("_ms"):
            return f"{value:,.1f}"
        if column.endswith("seconds"):
            return f"{value:,.1f} s"
        if float(value).is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:.4g}"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}" if column not in ("label", "position", "parity", "k", "r", "epoch", "best_epoch",
                                                    "most_confused_with", "erasures") else str(int(value))
    return html.escape(str(value))


HEADERS = {"accuracy_drop": "drop (pp)", "kl": "KL"}


def _header_text(column: str) -> str:
    text = HEADERS.get(column, column.replace("_", " "))
    words = text.split(" ")
    if "kl" in words:
        text = " ".join("KL" if w == "kl" else w for w in words) + " (nats)"
    elif column.endswith("_ms"):
        text = text[:-3] + " (ms)"
    return html.escape(text)


def _table(df: pd.DataFrame, table_id: str, wrap: Tuple[str, ...] = ()) -> str:
    """A table in its own scroll box (sticky header); numbers formatted with units, missing values as a dash."""
    head = "".join(f'<th scope="col" class="{"wrap" if c in wrap else ""}">{_header_text(str(c))}</th>' for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for column, value in zip(df.columns, row):
            text = _format_value(str(column), value)
            if column == "accuracy_drop" and text != "—":
                text = f"{value * 100:.1f}"  # percentage points (the header says so)
            number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            css = "wrap" if column in wrap else ("num" if number else "")
            cells.append(f'<td class="{css}">{text}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="scroll" tabindex="0"><table id="{table_id}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _note(text: str, note_id: str) -> str:
    return f'<p class="note" id="{note_id}">{text}</p>'


def _pct(value) -> str:
    return "—" if value is None or value != value else f"{value * 100:.1f} %"


def _seconds(value) -> str:
    if value is None or value != value:
        return "—"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"
