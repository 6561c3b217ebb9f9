"""Building a report: load the experiment tables, decide what goes in, render the folder, return the summary.

``build_report`` checks its input before anything is written, has :func:`render` write the page, its
scripts, data files and figures into a folder, and hands that folder to :mod:`.publishing`.
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from parity_ray import results, storage
from parity_ray.errors import UsageError
from parity_ray.registry import check_stored_config

from .. import explorer, figures, interactive, tables
from .publishing import GENERATOR, _publish_local, _upload
from .sections import (NAV, PAGE, SWEEPS_NAV, _accuracy_section, _boxes_section, _codes_section, _curves_section,
                       _erasure_section, _header, _latency_section, _lineage_section, _sweeps_section, compare_section,
                       explorer_section)


def build_report(path: Union[str, Sequence[str]], out: Optional[str] = None,
                 max_thumbnails: int = explorer.MAX_THUMBNAILS, data_root: Optional[str] = None) -> Dict[str, object]:
    """Write the report of the experiment at ``path``; return a summary (``report`` is the index).

    ``path`` may also be a list of experiment folders: one report of them all, whose run vs run
    compares runs of different experiments (run ids are shown with their experiment's name).
    ``out`` (a local folder or ``s3://`` URI) replaces the default ``<path>/report/``; a report of
    several experiments belongs in none of them, so there ``out`` is required.
    ``max_thumbnails`` bounds the decodes per run shown with images in the instance explorer
    (0: none); ``data_root`` is where to find the test images if not where the runs read them.
    Bad input (no experiment, another schema version, an unwritable target) raises
    :class:`UsageError` before anything is written.
    """
    started = time.perf_counter()
    paths = [str(path)] if isinstance(path, (str, os.PathLike)) else list(dict.fromkeys(str(p) for p in path))
    if not paths:
        raise UsageError("report needs an experiment folder (or several)")
    several = len(paths) > 1
    if max_thumbnails < 0:
        raise UsageError(f"--max-thumbnails must be 0 or more, got {max_thumbnails}")
    if several and not out:
        raise UsageError(f"a report of {len(paths)} experiments belongs in none of them: give the folder to write "
                         f"it to with --out DIR")
    if data_root:
        from parity_ray.data import data_roots

        data_roots(data_root)  # an explicit --data-root is used or refused, before anything is written
    if several:
        for one in paths:
            found, many = results.experiment_paths(one)  # a missing folder: the one-experiment message
            if many:
                raise UsageError(f"'{one}' is not an experiment folder but holds {len(found)}: name each experiment "
                                 f"to report on")
        labels = results.experiment_labels(paths)
        loaded = tables.qualify_ids(results.load(paths))  # run ids become <experiment>/<run id>
        target = storage.canonical(str(out))
    else:
        labels = [Path(_experiment_root(paths[0]).rstrip("/")).name or paths[0]]
        loaded = results.load_experiment(paths[0])  # one experiment: the report is written into it
        target = storage.canonical(str(out) if out else storage.join(_experiment_root(paths[0]), "report"))
        if not out:  # <experiment>/report may not be a link leading elsewhere (an --out you give is yours)
            storage.check_inside(_experiment_root(paths[0]), target)
    experiments = list(zip(paths, labels))
    for _, run in loaded.runs.iterrows():  # code a stored config names is refused before anything is written
        check_stored_config(run.get("config_json"), f"run '{run.get('run_id')}'")

    def render_into(folder: Path) -> List[str]:
        return render(loaded, paths[0], folder, max_thumbnails=max_thumbnails, data_root=data_root,
                      experiments=experiments if several else None)

    if storage.is_remote(target):
        with tempfile.TemporaryDirectory(prefix="parity-ray-report-") as staging:
            files = render_into(Path(staging))
            _upload(Path(staging), files, target)
    else:
        files = _publish_local(Path(target), render_into)
    runs = loaded.runs
    per_experiment = runs["experiment"].astype(str).value_counts() if several else {}
    return {
        "report": storage.join(target, "index.html"),
        "experiment": paths[0] if not several else ", ".join(paths),
        "experiments": [{"path": one, "name": name, "runs": int(per_experiment.get(name, 0)) if several else len(runs)}
                        for one, name in experiments],
        "runs": len(runs),
        "status": {k: int(v) for k, v in runs["status"].value_counts().sort_index().items()},
        "simulations": int(loaded.simulations["simulation_id"].nunique()) if not loaded.simulations.empty else 0,
        "figures": [f for f in files if f.endswith(".png") and "/" not in f],
        "explorer_runs": sum(1 for f in files if f.startswith("data/run-")),
        "thumbnail_sheets": sum(1 for f in files if f.startswith("images/")),
        "files": len(files),
        "seconds": round(time.perf_counter() - started, 2),
    }


# --------------------------------------------------------------------------- targets


def _experiment_root(path: str) -> str:
    """The experiment folder, also when given its ``tables/`` folder (as ``results.load`` accepts)."""
    stripped = path.rstrip("/")
    if stripped.endswith("/tables") or stripped == "tables":
        if storage.exists(storage.join(stripped, "runs.parquet")):
            return stripped[: -len("tables")].rstrip("/") or "."
    return path


# --------------------------------------------------------------------------- rendering


ASSETS = Path(__file__).resolve().parent.parent / "assets"  # analysis/assets, beside this package
STATIC = ["report.css", "report.js"]  # copied from analysis/assets beside index.html


def render(loaded, experiment: str, folder: Path, max_thumbnails: int = explorer.MAX_THUMBNAILS,
           data_root: Optional[str] = None, experiments: Optional[List[Tuple[str, str]]] = None) -> List[str]:
    """Write ``index.html``, its scripts, data files, thumbnails and PNG figures into ``folder``; return the file names.

    ``experiments``: ``(path, name)`` of each experiment when ``loaded`` holds several (their run
    ids qualified by ``tables.qualify_ids``); the sections then group or label runs by experiment.
    """
    written: List[str] = []
    charts: List[dict] = []

    def figure(name: str, fig, chart_specs: List[Optional[dict]]) -> str:
        """Interactive charts (Plotly) with the static PNG of the same data beside them (the notebooks' figure)."""
        (folder / name).write_bytes(figures.to_png(fig))
        written.append(name)
        parts = []
        for spec in chart_specs:
            if spec is not None:
                charts.append(spec)
                parts.append(f'<figure class="chart-box"><figcaption>{html.escape(spec["title"])}</figcaption>'
                             f'<div class="chart" id="{spec["id"]}" role="img" aria-label="{html.escape(spec["title"])}">'
                             '<p class="loading">Drawing the chart…</p></div></figure>')
        link = f'<p class="png">Static figure: <a href="{name}" class="png-link">{name}</a></p>'
        wide = any(spec is not None and spec.get("wide") for spec in chart_specs)
        return f'<div class="charts{" wide" if wide else ""}">' + "".join(parts) + "</div>" + link

    loaded, boxes = split_box_predictions(loaded)  # regression runs: scored by IoU, no class columns
    built = explorer.build(loaded, folder, boxes=boxes, max_thumbnails=max_thumbnails, data_root=data_root)
    written += built["files"]
    manifest = built["manifest"]
    manifest["pair"] = explorer.default_pair(manifest["runs"])
    for name in STATIC:
        shutil.copyfile(ASSETS / name, folder / name)
    shutil.copyfile(interactive.plotly_js(), folder / "plotly.min.js")
    written += STATIC + ["plotly.min.js"]

    tasks = {r["task"] for r in manifest["runs"]}
    sections = [
        _header(loaded, experiment, experiments),
        _accuracy_section(loaded, figure, several=bool(experiments)),
        _boxes_section(loaded, boxes),
        _codes_section(loaded, several=bool(experiments)),
        _lineage_section(loaded, manifest, several=bool(experiments)),
        explorer_section(classes="classification" in tasks or not tasks, boxes="regression" in tasks),
        compare_section(several=bool(experiments)),
        _curves_section(loaded, figure),
        _erasure_section(loaded, figure, boxes=not boxes.empty),
        _latency_section(loaded, experiment, figure, several=bool(experiments)),
    ]
    if not loaded.sweeps.empty:
        sections.append(_sweeps_section(loaded, figure))
    if experiments:
        name = " vs ".join(label for _, label in experiments)
    else:
        name = Path(_experiment_root(experiment).rstrip("/")).name or experiment
    page = PAGE.format(title=html.escape(f"{name} — parity_ray report"), generator=GENERATOR,
                       nav=NAV + (SWEEPS_NAV if not loaded.sweeps.empty else ""),
                       body="\n".join(sections), manifest=explorer.json_for_script(manifest),
                       charts=explorer.json_for_script(charts))
    (folder / "index.html").write_text(page, encoding="utf-8")
    return written + ["index.html"]


BOX_COLUMNS = ("true_box", "base_box", "decoded_box")


def split_box_predictions(loaded):
    """``(loaded with class predictions only, box prediction rows)``: regression runs' predictions hold boxes
    and IoUs instead of labels and top-5 lists, so the class sections (explorer, per-class tables) skip them."""
    import dataclasses

    p = loaded.predictions
    if p.empty or "decoded_box" not in p.columns:
        return loaded, p.iloc[0:0]
    is_box = p["decoded_box"].notna()
    classes = p[~is_box].drop(columns=[c for c in p.columns if c in BOX_COLUMNS or c.startswith("iou_")])
    if classes.empty:
        classes = results.empty_predictions()
    return dataclasses.replace(loaded, predictions=classes.reset_index(drop=True)), p[is_box].reset_index(drop=True)
