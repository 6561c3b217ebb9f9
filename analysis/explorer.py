"""The report's instance explorer and run-vs-run data: one ``data/run-<i>.js`` per run, thumbnail sheets.

Instance data stay out of ``index.html``: the page holds a small manifest, and the script
loads a run's file (``PR.register(i, {...})``) by adding a ``<script>`` tag when the run is
picked, which works from ``file://`` where ``fetch`` is refused. Thumbnails are drawn once
into sheets shared by every run that shows them (:mod:`analysis.thumbnails`).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from parity_ray.registry import Registry

from . import instances as inst
from .tables import BOX_DIFFERING, DIFFERING, run_labels, with_box_outcomes, with_outcomes
from .thumbnails import BOX_SIDE, MAX_SIDE, SheetSet

MAX_THUMBNAILS = 200  # per run: decoded instances (group x slot) shown with images, largest KL first


def _round(values, digits: int = 4) -> list:
    """Floats with ``digits`` significant digits (JSON stays small); NaN as null."""
    out = []
    for v in np.asarray(values, dtype=float).tolist():
        out.append(None if v != v else float(f"{v:.{digits}g}"))
    return out


def _ints(values) -> list:
    return np.asarray(values, dtype=np.int64).tolist()


def _bitset(indices, size: int) -> str:
    bits = np.zeros(max(size, 1), dtype=bool)
    bits[np.asarray(list(indices), dtype=np.int64)] = True
    return base64.b64encode(np.packbits(bits, bitorder="little").tobytes()).decode()


def _top5(rows: pd.DataFrame, which: str):
    classes, probs = f"{which}_top5", f"{which}_top5_probabilities"
    if classes not in rows or probs not in rows or rows.empty:
        return None, None
    flat_c, flat_p = [], []
    for c, p in zip(rows[classes], rows[probs]):
        c = list(c)[:5] if c is not None else []
        p = list(p)[:5] if p is not None else []
        c += [-1] * (5 - len(c))
        p += [0.0] * (5 - len(p))
        flat_c.extend(int(v) for v in c)
        flat_p.extend(p)
    return flat_c, _round(flat_p, 3)


class _Images:
    """Thumbnails of the explorer: test images by dataset (shared by every run) and coded queries by code."""

    def __init__(self, max_thumbnails: int, data_root: Optional[str]):
        self.max_thumbnails, self.data_root = max_thumbnails, data_root
        self.data_sheets: Dict[str, SheetSet] = {}
        self.data_inputs: Dict[str, inst.RunInputs] = {}
        self.needed: Dict[str, set] = {}
        self.coded_sheets: Dict[str, SheetSet] = {}

    def for_run(self, row: pd.Series, differing: pd.DataFrame, members: pd.DataFrame, boxes: bool = False):
        """``(images, thumb)``: the run's image status for the page and, per differing row, whether it has images.

        ``differing`` is sorted most interesting first: the first ``max_thumbnails`` (group, slot)
        pairs get images. ``members`` holds each group's test indices (one column per slot).
        """
        k = int(row["k"])
        thumb = np.zeros(len(differing), dtype=np.int8)
        if differing.empty:
            return {"status": "none", "reason": "no decode of this run differs from the base model"}, thumb
        if self.max_thumbnails <= 0:
            return {"status": "off", "reason": "thumbnails were turned off (--max-thumbnails 0)"}, thumb
        try:
            inputs = inst.run_inputs(row, self.data_root)
        except inst.ImagesUnavailable as exc:
            return {"status": "unavailable", "reason": str(exc)}, thumb
        dataset = str(row["dataset"])
        slots = differing[["group_id", "position"]].drop_duplicates().head(self.max_thumbnails)
        chosen = sorted(set(slots["group_id"].tolist()))
        chosen_members = members.loc[chosen].to_numpy(dtype=np.int64)
        self.data_inputs.setdefault(dataset, inputs)
        self.needed.setdefault(dataset, set()).update(chosen_members.ravel().tolist())
        height, width = inputs.test_x.shape[-2:]
        if dataset not in self.data_sheets:
            self.data_sheets[dataset] = SheetSet(_safe(dataset), int(height), int(width),
                                                 max_side=BOX_SIDE if boxes else MAX_SIDE)
        coded = self.coded_sheets.get(inputs.key)
        todo = [g for g in chosen if coded is None or g not in coded.slots]
        if todo:
            queries = inst.coded_queries(inputs, members.loc[todo].to_numpy(dtype=np.int64))
            if coded is None:
                coded = self.coded_sheets[inputs.key] = SheetSet(f"coded-{inputs.key}", int(queries.shape[-2]),
                                                                 int(queries.shape[-1]))
                coded.workers = int(queries.shape[1])
            m = coded.workers
            flat = inst.to_display(queries.reshape(-1, *queries.shape[2:]), inputs.kind, stretch=True)
            for n, g in enumerate(todo):
                coded.slots[g] = len(coded.slots)  # dense: a run's coded queries fill few sheets
                for j in range(m):
                    coded.add(coded.slots[g] * m + j, flat[n * m + j])
        m = coded.workers
        workers = list(range(k, k + m)) if inst.is_systematic(row) else list(range(m))
        key = differing["group_id"].to_numpy(np.int64) * 64 + differing["position"].to_numpy(np.int64)
        picked = slots["group_id"].to_numpy(np.int64) * 64 + slots["position"].to_numpy(np.int64)
        thumb = np.isin(key, picked).astype(np.int8)
        images = {"status": "ok", "kind": inputs.kind, "data": _safe(dataset), "coded": f"coded-{inputs.key}",
                  "workers": workers, "coded_slots": {str(g): coded.slots[g] for g in chosen}, "shown": int(len(slots)),
                  "capped": bool(differing[["group_id", "position"]].drop_duplicates().shape[0] > len(slots))}
        return images, thumb

    def write(self, folder: Path) -> Tuple[List[str], Dict[str, dict], Dict[str, dict]]:
        """Write every sheet; return the files, the datasets' and the coded queries' manifests."""
        datasets: Dict[str, dict] = {}
        try:
            files = _write_sheets(folder, self.data_sheets, self.data_inputs, self.needed, datasets)
        finally:
            inst.clear_cache()
        coded_manifest = {}
        for sheet in self.coded_sheets.values():
            files += sheet.write(folder)
            coded_manifest[sheet.name] = {**sheet.manifest(), "workers": sheet.workers}
        return files, datasets, coded_manifest


def _patterns(differing: pd.DataFrame):
    """``(pattern codes per row, the patterns)``: fewest erasures first."""
    codes, uniques = pd.factorize(differing["pattern"])  # vectorised: no per-row string access
    uniques = [str(u) for u in uniques]
    patterns = sorted(uniques, key=lambda s: (s.count(",") + 1, s))
    pattern_codes = np.array([patterns.index(u) for u in uniques], dtype=np.int64)[codes] if len(codes) else codes
    return pattern_codes, patterns


def _members(p: pd.DataFrame) -> pd.DataFrame:
    return p.drop_duplicates(["group_id", "position"]).pivot(index="group_id", columns="position", values="test_index")


def _groups(members: pd.DataFrame, differing: pd.DataFrame) -> Dict[str, list]:
    groups = members.loc[sorted(set(differing["group_id"].tolist()))] if not differing.empty else members.iloc[0:0]
    return {str(g): _ints(v) for g, v in zip(groups.index, groups.to_numpy(dtype=np.int64))}


def _differing_decodes(row: pd.Series, p: pd.DataFrame, images: _Images, outcomes, sort_key: str, ascending: bool,
                       boxes: bool = False):
    """The decodes of ``outcomes``, sorted by ``sort_key`` (then group and slot), with the rows every
    explorer payload shares: where each decode sits, its outcome and its thumbnail.

    Returns ``(differing, members, shown images, patterns, rows)``.
    """
    differing = p[p["outcome"].isin(outcomes)].sort_values([sort_key, "group_id", "position"],
                                                          ascending=[ascending, True, True], kind="stable")
    members = _members(p)
    shown, thumb = images.for_run(row, differing, members, boxes=boxes)
    pattern_codes, patterns = _patterns(differing)
    rows = {
        "group": _ints(differing["group_id"]),
        "position": _ints(differing["position"]),
        "erasures": _ints(differing["erasures"]),
        "pattern": _ints(pattern_codes),
        "test_index": _ints(differing["test_index"]),
        "outcome": _ints(pd.Categorical(differing["outcome"].astype(object), categories=outcomes).codes),
        "thumb": thumb.tolist(),
    }
    return differing, members, shown, patterns, rows


EXPLORER_PAYLOADS: Registry = Registry("explorer payload", "explorer_payloads", """
    Keyed by a registered task's name (``parity_ray.tasks``): a function ``(run row, its
    prediction rows with outcomes, thumbnails) -> dict``, the data the report's explorer draws for
    one run of that task. The dict holds ``task``, ``outcomes``, ``patterns``, ``rows``,
    ``images``, ``groups``, ``summaries`` and ``differing``.""")


def _run_task(row: pd.Series, boxed: bool) -> str:
    """The run's task: its runs-table column, or (tables written before it) what its rows hold."""
    task = row.get("task")
    if isinstance(task, str) and task in EXPLORER_PAYLOADS:
        return task
    return "regression" if boxed else "classification"


@EXPLORER_PAYLOADS.register("classification")
def _class_payload(row: pd.Series, p: pd.DataFrame, images: _Images) -> dict:
    """A classification run's explorer data: decodes whose answer differs from the base model's."""
    differing, members, shown, patterns, rows = _differing_decodes(row, p, images, DIFFERING, "kl_base_decoded", False)
    rows.update({
        "label": _ints(differing["label"]),
        "base": _ints(differing["base_prediction"]),
        "decoded": _ints(differing["decoded_prediction"]),
        "base_p": _round(differing["base_top_probability"], 3),
        "decoded_p": _round(differing["decoded_top_probability"], 3),
        "kl": _round(differing["kl_base_decoded"]),
    })
    if "parity" in differing:
        rows["parity"] = _ints(differing["parity"])
    for which in ("base", "decoded"):
        classes, probs = _top5(differing, which)
        if classes is not None:
            rows[f"{which}_top5"], rows[f"{which}_top5_p"] = classes, probs
    summaries = {}
    for e in sorted(int(v) for v in p["erasures"].unique()):
        s = inst.instance_summary(p, e)
        summaries[str(e)] = {"test_index": _ints(s["test_index"]), "label": _ints(s["label"]),
                             "base": _ints(s["base_prediction"]), "prediction": _ints(s["prediction"]),
                             "correct": _ints(np.round(s["correct"] * 1000)), "decodes": _ints(s["decodes"])}
    return {"task": "classification", "outcomes": {o: int((p["outcome"] == o).sum()) for o in DIFFERING},
            "patterns": patterns, "rows": rows, "images": shown, "groups": _groups(members, differing),
            "summaries": summaries, "differing": int(len(differing))}


def _boxes(values, digits: int = 2) -> list:
    """A column of ``[x, y, w, h]`` boxes, flattened (four numbers a row), rounded to ``digits`` decimals."""
    flat = np.stack([np.asarray(v, dtype=np.float64) for v in values]).ravel() if len(values) else np.zeros(0)
    return [None if v != v else round(float(v), digits) for v in flat.tolist()]


@EXPLORER_PAYLOADS.register("regression")
def _box_payload(row: pd.Series, p: pd.DataFrame, images: _Images) -> dict:
    """A regression run's explorer data: decodes whose box outcome differs from the base model's, or both miss.

    Boxes are ``[x, y, w, h]`` in the frame of the run's test images (``test_x``: 224 x 224 for
    CUB, where the dataset reader scaled each file's box); the page draws them over the
    thumbnails in that frame. ``boxes`` holds every group member's true and base box (the
    partners' tiles show them).
    """
    differing, members, shown, patterns, rows = _differing_decodes(row, p, images, BOX_DIFFERING, "iou_decoded_base", True,
                                                                   boxes=True)
    rows.update({
        "true_box": _boxes(differing["true_box"]),
        "base_box": _boxes(differing["base_box"]),
        "decoded_box": _boxes(differing["decoded_box"]),
        "iou_dt": _round(differing["iou_decoded_true"], 3),
        "iou_bt": _round(differing["iou_base_true"], 3),
        "iou_db": _round(differing["iou_decoded_base"], 3),
    })
    groups = _groups(members, differing)
    partners = sorted({i for v in groups.values() for i in v})
    per_image = p.drop_duplicates("test_index").set_index("test_index")
    known = per_image.reindex(partners)
    boxes = {str(i): _boxes([t]) + _boxes([b]) for i, t, b in zip(partners, known["true_box"], known["base_box"])
             if t is not None and b is not None}
    summaries = {}
    for e in sorted(int(v) for v in p["erasures"].unique()):
        s = p[p["erasures"] == e].groupby("test_index", sort=True).agg(
            decodes=("decoded_hit", "size"), correct=("decoded_hit", "mean"), iou=("iou_decoded_true", "mean"),
            base=("base_hit", "first"), base_iou=("iou_base_true", "first")).reset_index()
        summaries[str(e)] = {"test_index": _ints(s["test_index"]), "correct": _ints(np.round(s["correct"] * 1000)),
                             "decodes": _ints(s["decodes"]), "iou": _ints(np.round(s["iou"].fillna(0) * 1000)),
                             "base": _ints(s["base"].astype(int)), "base_iou": _ints(np.round(s["base_iou"].fillna(0) * 1000))}
    return {"task": "regression", "outcomes": {o: int((p["outcome"] == o).sum()) for o in BOX_DIFFERING},
            "patterns": patterns, "rows": rows, "images": shown, "groups": groups, "boxes": boxes,
            "summaries": summaries, "differing": int(len(differing))}


def build(loaded, folder: Path, *, boxes: Optional[pd.DataFrame] = None, max_thumbnails: int = MAX_THUMBNAILS,
          data_root: Optional[str] = None, log: Callable[[str], None] = lambda _m: None) -> Dict[str, object]:
    """Write ``data/run-<i>.js`` for every completed run with predictions and the thumbnail sheets.

    ``loaded.predictions`` holds the class predictions; ``boxes`` the box predictions of
    regression runs (``report.split_box_predictions``), shown with the boxes drawn over the images.
    Returns ``{"manifest": ..., "files": [...]}``; the manifest goes into ``index.html``.
    """
    predictions = loaded.predictions
    boxes = boxes if boxes is not None else predictions.iloc[0:0]
    with_rows = set(predictions["run_id"]) | (set(boxes["run_id"]) if not boxes.empty else set())
    runs = loaded.runs[(loaded.runs["status"] == "COMPLETED") & loaded.runs["run_id"].isin(with_rows)]
    labels = run_labels(runs)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    files: List[str] = []
    images = _Images(max_thumbnails, data_root)
    manifest_runs = []
    p_all = with_outcomes(predictions) if not predictions.empty else predictions
    by_run = dict(tuple(p_all.groupby("run_id", sort=False))) if not p_all.empty else {}
    box_all = with_box_outcomes(boxes) if not boxes.empty else boxes
    box_by_run = dict(tuple(box_all.groupby("run_id", sort=False))) if not box_all.empty else {}

    for i, run in enumerate(runs.itertuples(index=False)):
        row = pd.Series(run._asdict())
        boxed = row["run_id"] in box_by_run  # the box columns hold its rows (the regression task's)
        p = box_by_run[row["run_id"]] if boxed else by_run[row["run_id"]]
        data = EXPLORER_PAYLOADS.get(_run_task(row, boxed))(row, p, images)
        k, r = int(row["k"]), int(row["r"])
        differing = data.pop("differing")
        experiment = str(row["experiment"]) if "experiment" in row and pd.notna(row.get("experiment")) else ""
        payload = {"run_id": row["run_id"], "k": k, "r": r, "systematic": inst.is_systematic(row),
                   "dataset": str(row["dataset"]), "decodes": int(len(p)), "instances_total": int(p["test_index"].nunique()),
                   **data}
        name = f"data/run-{i}.js"
        text = f"PR.register({i}, {json_for_script(payload)});\n"
        (folder / name).write_text(text, encoding="utf-8")
        files.append(name)
        manifest_runs.append({
            "i": i, "run_id": row["run_id"], "label": labels.get(row["run_id"], row["run_id"]),
            "experiment": experiment, "dataset": str(row["dataset"]), "task": data["task"],
            "k": k, "r": r, "code_family": str(inst.code_family(pd.DataFrame([row])).iloc[0]),
            "encoder": str(row["encoder"]), "decoder": str(row["decoder"]), "loss": str(row.get("loss")),
            "base_model_id": None if pd.isna(row.get("base_model_id")) else str(row.get("base_model_id")),
            "degraded_accuracy": _round([row.get("degraded_accuracy")])[0],
            "available_accuracy": _round([row.get("available_accuracy")])[0],
            "differing": differing, "erasures": sorted(int(e) for e in data["summaries"]), "file": name,
            "bytes": len(text),
        })
        log(f"explorer: {row['run_id']} ({differing} differing decodes)")

    sheet_files, datasets, coded_manifest = images.write(folder)
    files += sheet_files
    return {"manifest": {"runs": manifest_runs, "datasets": datasets, "coded": coded_manifest,
                         "outcomes": DIFFERING, "box_outcomes": BOX_DIFFERING, "max_thumbnails": max_thumbnails,
                         "experiments": sorted({r["experiment"] for r in manifest_runs if r["experiment"]})},
            "files": files}


def _write_sheets(folder: Path, data_sheets: Dict[str, SheetSet], data_inputs: Dict[str, "inst.RunInputs"],
                  needed: Dict[str, set], datasets: Dict[str, dict]) -> List[str]:
    """The test-image sheets: every image any run shows, drawn once per dataset."""
    files: List[str] = []
    for dataset, sheet in data_sheets.items():
        inputs = data_inputs[dataset]
        indices = sorted(needed[dataset])
        shown = inst.to_display(inputs.test_x[np.asarray(indices, dtype=np.int64)], inputs.kind, inputs.mean, inputs.std)
        for index, image in zip(indices, shown):
            sheet.add(index, image)
        files += sheet.write(folder)
        height, width = inputs.test_x.shape[-2:]
        # frame: the pixel size of the test images, the frame that box coordinates are given in.
        datasets[dataset] = {**sheet.manifest(), "kind": inputs.kind, "size": int(len(inputs.test_y)),
                             "frame": [int(height), int(width)], "bits": _bitset(indices, int(len(inputs.test_y)))}
    return files


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def default_pair(manifest_runs: List[dict]) -> Optional[List[int]]:
    """Two runs worth comparing first: same dataset, k and r, different code (else any two of a dataset).

    In a report of several experiments, a pair across two experiments comes first at equal k and r.
    """
    best = None
    for a in manifest_runs:
        for b in manifest_runs:
            if a["i"] >= b["i"] or a["dataset"] != b["dataset"]:
                continue
            score = (a["k"] == b["k"] and a["r"] == b["r"], a.get("experiment") != b.get("experiment"),
                     a["encoder"] != b["encoder"] or a["code_family"] != b["code_family"])
            if best is None or score > best[0]:
                best = (score, [a["i"], b["i"]])
    return best[1] if best else None


_SCRIPT_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def json_for_script(obj) -> str:
    """JSON safe inside any ``<script>`` element, whatever strings a stored table holds.

    ``<``, ``>`` and ``&`` are written as ``\\u003c``, ``\\u003e`` and ``\\u0026`` (so neither ``</script>``
    nor ``<!--`` can end or derail the script), and the two line separators JavaScript once read
    as newlines are escaped too; JSON.parse and a JavaScript literal read the same values back."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).translate(_SCRIPT_ESCAPES)


