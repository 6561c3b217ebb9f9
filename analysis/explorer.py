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
from typing import Callable, Dict, List, Optional

import numpy as np
import pandas as pd

from . import instances as inst
from .tables import DIFFERING, run_labels, with_outcomes
from .thumbnails import SheetSet

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


def build(loaded, folder: Path, *, max_thumbnails: int = MAX_THUMBNAILS, data_root: Optional[str] = None,
          log: Callable[[str], None] = lambda _m: None) -> Dict[str, object]:
    """Write ``data/run-<i>.js`` for every completed run with predictions and the thumbnail sheets.

    Returns ``{"manifest": ..., "files": [...]}``; the manifest goes into ``index.html``.
    """
    runs = loaded.runs[loaded.runs["status"] == "COMPLETED"]
    predictions = loaded.predictions
    runs = runs[runs["run_id"].isin(set(predictions["run_id"]))] if not predictions.empty else runs.iloc[0:0]
    labels = run_labels(runs)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    files: List[str] = []
    datasets: Dict[str, dict] = {}
    data_sheets: Dict[str, SheetSet] = {}
    data_inputs: Dict[str, inst.RunInputs] = {}
    needed: Dict[str, set] = {}
    coded_sheets: Dict[str, SheetSet] = {}
    manifest_runs = []
    p_all = with_outcomes(predictions) if not predictions.empty else predictions
    by_run = dict(tuple(p_all.groupby("run_id", sort=False))) if not p_all.empty else {}

    for i, run in enumerate(runs.itertuples(index=False)):
        row = pd.Series(run._asdict())
        p = by_run[row["run_id"]]
        k, r = int(row["k"]), int(row["r"])
        systematic = inst.is_systematic(row)
        dataset = str(row["dataset"])
        differing = p[p["outcome"].isin(DIFFERING)].sort_values(["kl_base_decoded", "group_id", "position"],
                                                               ascending=[False, True, True], kind="stable")
        members = p.drop_duplicates(["group_id", "position"]).pivot(index="group_id", columns="position",
                                                                   values="test_index")
        # Images: the test split and the encoder, rebuilt here from the run's config.
        images = {"status": "none", "reason": "no decode of this run differs from the base model"}
        thumb = np.zeros(len(differing), dtype=np.int8)
        workers = None
        if not differing.empty and max_thumbnails <= 0:
            images = {"status": "off", "reason": "thumbnails were turned off (--max-thumbnails 0)"}
        elif not differing.empty:
            try:
                inputs = inst.run_inputs(row, data_root)
            except inst.ImagesUnavailable as exc:
                images = {"status": "unavailable", "reason": str(exc)}
                inputs = None
            if inputs is not None:
                slots = differing[["group_id", "position"]].drop_duplicates().head(max_thumbnails)
                chosen = sorted(set(slots["group_id"].tolist()))
                chosen_members = members.loc[chosen].to_numpy(dtype=np.int64)
                data_inputs.setdefault(dataset, inputs)
                needed.setdefault(dataset, set()).update(chosen_members.ravel().tolist())
                height, width = inputs.test_x.shape[-2:]
                if dataset not in data_sheets:
                    data_sheets[dataset] = SheetSet(_safe(dataset), int(height), int(width))
                coded = coded_sheets.get(inputs.key)
                todo = [g for g in chosen if coded is None or g not in coded.slots]
                if todo:
                    queries = inst.coded_queries(inputs, members.loc[todo].to_numpy(dtype=np.int64))
                    if coded is None:
                        coded = coded_sheets[inputs.key] = SheetSet(f"coded-{inputs.key}", int(queries.shape[-2]),
                                                                    int(queries.shape[-1]))
                        coded.workers = int(queries.shape[1])
                    m = coded.workers
                    flat = inst.to_display(queries.reshape(-1, *queries.shape[2:]), inputs.kind, stretch=True)
                    for n, g in enumerate(todo):
                        coded.slots[g] = len(coded.slots)  # dense: a run's coded queries fill few sheets
                        for j in range(m):
                            coded.add(coded.slots[g] * m + j, flat[n * m + j])
                m = coded.workers
                workers = list(range(k, k + m)) if systematic else list(range(m))
                coded_slots = {str(g): coded.slots[g] for g in chosen}
                key = differing["group_id"].to_numpy(np.int64) * 64 + differing["position"].to_numpy(np.int64)
                picked = slots["group_id"].to_numpy(np.int64) * 64 + slots["position"].to_numpy(np.int64)
                thumb = np.isin(key, picked).astype(np.int8)
                images = {"status": "ok", "kind": inputs.kind, "data": _safe(dataset), "coded": f"coded-{inputs.key}",
                          "workers": workers, "coded_slots": coded_slots, "shown": int(len(slots)),
                          "capped": bool(differing[["group_id", "position"]].drop_duplicates().shape[0] > len(slots))}

        codes, uniques = pd.factorize(differing["pattern"])  # vectorised: no per-row string access
        uniques = [str(u) for u in uniques]
        patterns = sorted(uniques, key=lambda s: (s.count(",") + 1, s))
        pattern_codes = np.array([patterns.index(u) for u in uniques], dtype=np.int64)[codes] if len(codes) else codes
        groups = members.loc[sorted(set(differing["group_id"].tolist()))] if not differing.empty else members.iloc[0:0]
        rows = {
            "group": _ints(differing["group_id"]),
            "position": _ints(differing["position"]),
            "erasures": _ints(differing["erasures"]),
            "pattern": _ints(pattern_codes),
            "test_index": _ints(differing["test_index"]),
            "label": _ints(differing["label"]),
            "base": _ints(differing["base_prediction"]),
            "decoded": _ints(differing["decoded_prediction"]),
            "base_p": _round(differing["base_top_probability"], 3),
            "decoded_p": _round(differing["decoded_top_probability"], 3),
            "kl": _round(differing["kl_base_decoded"]),
            "outcome": _ints(pd.Categorical(differing["outcome"].astype(object), categories=DIFFERING).codes),
            "thumb": thumb.tolist(),
        }
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
        payload = {
            "run_id": row["run_id"], "k": k, "r": r, "systematic": systematic, "dataset": dataset,
            "decodes": int(len(p)), "instances_total": int(p["test_index"].nunique()),
            "outcomes": {o: int((p["outcome"] == o).sum()) for o in DIFFERING},
            "patterns": patterns, "rows": rows, "images": images,
            "groups": {str(g): _ints(v) for g, v in zip(groups.index, groups.to_numpy(dtype=np.int64))},
            "summaries": summaries,
        }
        name = f"data/run-{i}.js"
        text = f"PR.register({i}, {json.dumps(payload, separators=(',', ':'), allow_nan=False)});\n"
        (folder / name).write_text(text, encoding="utf-8")
        files.append(name)
        manifest_runs.append({
            "i": i, "run_id": row["run_id"], "label": labels.get(row["run_id"], row["run_id"]), "dataset": dataset,
            "k": k, "r": r, "code_family": str(inst.code_family(pd.DataFrame([row])).iloc[0]),
            "encoder": str(row["encoder"]), "decoder": str(row["decoder"]), "loss": str(row.get("loss")),
            "base_model_id": None if pd.isna(row.get("base_model_id")) else str(row.get("base_model_id")),
            "degraded_accuracy": _round([row.get("degraded_accuracy")])[0],
            "available_accuracy": _round([row.get("available_accuracy")])[0],
            "differing": int(len(differing)), "erasures": sorted(int(e) for e in summaries), "file": name,
            "bytes": len(text),
        })
        log(f"explorer: {row['run_id']} ({len(differing)} differing decodes)")

    try:
        files += _write_sheets(folder, data_sheets, data_inputs, needed, datasets)
    finally:
        inst.clear_cache()
    coded_manifest = {}
    for key, sheet in coded_sheets.items():
        files += sheet.write(folder)
        coded_manifest[sheet.name] = {**sheet.manifest(), "workers": sheet.workers}
    return {"manifest": {"runs": manifest_runs, "datasets": datasets, "coded": coded_manifest,
                         "outcomes": DIFFERING, "max_thumbnails": max_thumbnails},
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
        datasets[dataset] = {**sheet.manifest(), "kind": inputs.kind, "size": int(len(inputs.test_y)),
                             "bits": _bitset(indices, int(len(inputs.test_y)))}
    return files


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def default_pair(manifest_runs: List[dict]) -> Optional[List[int]]:
    """Two runs worth comparing first: same dataset, k and r, different code (else any two of a dataset)."""
    best = None
    for a in manifest_runs:
        for b in manifest_runs:
            if a["i"] >= b["i"] or a["dataset"] != b["dataset"]:
                continue
            score = (a["k"] == b["k"] and a["r"] == b["r"], a["encoder"] != b["encoder"] or a["code_family"] != b["code_family"])
            if best is None or score > best[0]:
                best = (score, [a["i"], b["i"]])
    return best[1] if best else None


def json_for_script(obj) -> str:
    """JSON safe inside a ``<script type="application/json">`` element."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


