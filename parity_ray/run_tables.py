"""Rows of the result tables from one run's files: the one owner of a ``runs`` row and a run's
``epochs`` rows, whoever trained the run.

Two callers: the Tune engine (``parity_ray.tune.experiment``) builds an experiment's tables from its
trials' checkpoints, and :func:`tables_from_run_folders` builds the same tables from a folder of
``parity-ray train`` runs (``runs/<name>/config.json, metrics.jsonl, predictions.parquet,
summary.json``), so that ``report``, ``results.load`` and the notebooks read such a folder as an
experiment. A run folder is data: nothing in it is imported or run, and its weights stay where
``results.load`` confines them (inside the folder).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from .coders import code_family, is_base_worker
from .config import TrainConfig
from .data import get_dataset_spec
from .errors import UsageError
from .metrics import best_epoch_row
from .models import model_cost
from .provenance import SCHEMA_VERSION, json_column, library_versions
from .registry import spec_name

RUN_FILES = ("config.json", "metrics.jsonl")  # what makes a folder a run folder (summary.json: a finished one)
BASE_MODEL_COLUMNS = ["base_model_id", "dataset", "arch", "seed", "source", "val_accuracy", "test_accuracy",
                      "train_accuracy", "train_seconds", "epochs", "input_norm", "weights_uri"]
TRAIN_SPACE = "train"  # the ``space`` of a run that ``parity-ray train`` made, not a Tune grid


@dataclass
class RunFiles:
    history: List[Dict[str, Any]]  # metrics.jsonl: one row per (epoch, split)
    record: Dict[str, Any]  # config.json: resolved config, seed, versions, data split, base-model lineage
    predictions: Any  # predictions.parquet as a DataFrame, or None
    summary: Optional[Dict[str, Any]]  # summary.json (written when the run finished), or None


def read_run_files(folder: Path) -> RunFiles:
    """A run folder's files (a trial's checkpoint folder or ``parity-ray train``'s run folder)."""
    from . import storage

    folder = Path(folder)
    history = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    record = json.loads((folder / "config.json").read_text())
    predictions_file = folder / "predictions.parquet"
    predictions = storage.read_parquet(str(predictions_file)).to_pandas() if predictions_file.exists() else None
    summary_file = folder / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else None
    return RunFiles(history, record, predictions, summary)


# --------------------------------------------------------------------------- one run's rows


def config_columns(config: Dict[str, Any]) -> Dict[str, Any]:
    """Every config key as a column (a class-spec as its name), resolved where the config is valid."""
    try:
        resolved = TrainConfig.from_dict(config).resolved().to_dict()
    except UsageError:
        resolved = {**TrainConfig().to_dict(), **config}
    return {k: spec_name(v) if isinstance(v, dict) else v for k, v in resolved.items() if k not in ("out", "name")}


def code_columns(config: Dict[str, Any], best_test: Dict[str, Any]) -> Dict[str, Any]:
    """Code family, worker kind, redundancy, both measures for every e (e1..e3 always, more when r > 3)
    and how many erasure patterns each e was scored over (``patterns_scored_e<e>``)."""
    try:
        resolved = TrainConfig.from_dict(config).resolved()
        family = code_family(resolved.encoder, resolved.decoder)
        worker = "base" if is_base_worker(resolved.parity_model) else "trained"
        k, r = resolved.k, resolved.r
        cost = _parity_cost(resolved)
    except UsageError:
        family, worker, k, r = None, None, config.get("k"), config.get("r") or 1
        cost = dict.fromkeys(PARITY_COST_COLUMNS)
    columns: Dict[str, Any] = {"code_family": family, "worker": worker,
                               "redundancy": (r / k) if k else None, **cost}
    columns.update({key: best_test.get(key) for key in
                    ["all_accuracy_e0"] +
                    [f"{m}_e{e}" for e in range(1, max(3, int(r or 1)) + 1) for m in ("degraded_accuracy", "all_accuracy")]})
    columns.update({f"patterns_scored_e{e}": int(best_test[f"patterns_scored_e{e}"])
                    for e in range(1, int(r or 1) + 1) if best_test.get(f"patterns_scored_e{e}") is not None})
    for key in ("byzantine_accuracy", "byzantine_accuracy_unlocated", "byzantine_located"):
        columns[key] = best_test.get(key)
    return columns


PARITY_COST_COLUMNS = ("parity_arch", "parity_params", "parity_flops")


def parity_cost_columns(config: Dict[str, Any]) -> Dict[str, Any]:
    """What runs on each coded query and what it costs: ``parity_arch`` (the parity model's registered
    name, F's own where the workers are F), its parameters, and its FLOPs per coded query (a
    multiply-add counts 2). Null where the model is not a registered one (a class-spec is never
    imported to cost it) or the config does not resolve."""
    try:
        return _parity_cost(TrainConfig.from_dict(config).resolved())
    except UsageError:
        return dict.fromkeys(PARITY_COST_COLUMNS)


def _parity_cost(resolved: TrainConfig) -> Dict[str, Any]:
    """:func:`parity_cost_columns` of an already resolved config (raises UsageError for an unknown dataset)."""
    spec = get_dataset_spec(resolved.dataset)
    arch = resolved.model if is_base_worker(resolved.parity_model) else resolved.parity_model
    cost = model_cost(arch, input_shape=spec.input_shape, num_classes=spec.num_classes,
                      group_size=None if is_base_worker(resolved.parity_model) else resolved.k)
    return {"parity_arch": spec_name(arch), "parity_params": cost.params if cost else None,
            "parity_flops": cost.flops if cost else None}


def task_of(config: Dict[str, Any]) -> Optional[str]:
    """classification or regression: what the run's dataset asks of F (None for an unregistered dataset)."""
    try:
        return get_dataset_spec(config.get("dataset")).task
    except UsageError:
        return None


def run_row(experiment: str, run_id: str, config: Dict[str, Any], status: str, error: Optional[str],
            history: List[Dict[str, Any]], record: Optional[Dict[str, Any]], *, space: Optional[str] = None,
            base_id: Optional[str] = None, checkpoint_uri: Optional[str] = None,
            metrics: Optional[Dict[str, Any]] = None, cpus: Optional[float] = None,
            gpus: Optional[float] = None) -> Dict[str, Any]:
    """The ``runs`` row of one run (docs/tables.md): its config, lineage, status, best and final
    accuracies (the best epoch chosen on validation only), cost and provenance. ``metrics`` holds what
    the trainer or Tune measured of it (``train_seconds``, ``time_total_s``, node, trial id)."""
    def split_row(epoch: int) -> Dict[str, float]:
        return next((r for r in history if r["epoch"] == epoch and r["split"] == "test"), {})

    best = best_epoch_row([r for r in history if r["split"] == "val"])
    best_epoch = best["epoch"] if best else None
    final_epoch = max((r["epoch"] for r in history), default=None)
    metrics = metrics or {}
    best_test = split_row(-1 if best_epoch is None else best_epoch)
    final_test = split_row(-1 if final_epoch is None else final_epoch)
    return {
        "experiment": experiment,
        "run_id": run_id,
        "status": status,
        "error": error,
        **config_columns(config),
        "config_json": json_column(config),
        "space": space,
        "base_model_id": base_id or (record or {}).get("base_model", {}).get("id"),
        "available_accuracy": best_test.get("available_accuracy"),
        "majority_accuracy": best_test.get("majority_accuracy"),
        "degraded_accuracy": best_test.get("overall_top1"),
        "reconstruction_accuracy": best_test.get("reconstruction_top1"),
        "degraded_top5": best_test.get("overall_top5"),
        "task": task_of(config),
        "degraded_mean_iou": best_test.get("mean_iou"),
        "reconstruction_mean_iou": best_test.get("reconstruction_mean_iou"),
        **code_columns(config, best_test),
        "best_epoch": best_epoch,
        "best_val_reconstruction": best["reconstruction_top1"] if best else None,
        "val_degraded_accuracy": best.get("overall_top1") if best else None,
        "final_degraded_accuracy": final_test.get("overall_top1"),
        "final_reconstruction_accuracy": final_test.get("reconstruction_top1"),
        "epochs_done": final_epoch or 0,
        "train_seconds": metrics.get("train_seconds"),
        "wall_seconds": metrics.get("time_total_s"),
        "cpus": cpus,
        "gpus": gpus,
        "node_id": metrics.get("node_id"),
        "node_ip": metrics.get("node_ip"),
        "hostname": metrics.get("hostname"),
        "versions": json_column((record or {}).get("versions") or library_versions()),
        "checkpoint_uri": checkpoint_uri,
        "trial_id": metrics.get("trial_id"),
        "schema_version": SCHEMA_VERSION,
    }


def epoch_rows(run_id: str, history: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The ``epochs`` rows (long format) of one run's metric history."""
    return [{"run_id": run_id, "epoch": row["epoch"], "split": row["split"], "metric": metric, "value": float(value)}
            for row in history for metric, value in row.items() if metric not in ("epoch", "split")]


def base_model_row(base: Dict[str, Any]) -> Dict[str, Any]:
    """The ``base_models`` row of a base model's record (the Tune stage's, or a run's ``base_model``
    lineage, which names its weights file ``weights``)."""
    return {"base_model_id": base["id"], "dataset": base.get("dataset"), "arch": base.get("arch"),
            "seed": base.get("seed"), "source": base.get("source"), "val_accuracy": base.get("val_accuracy"),
            "test_accuracy": base.get("test_accuracy"), "train_accuracy": base.get("train_accuracy"),
            "train_seconds": base.get("train_seconds"), "epochs": base.get("epochs"),
            "input_norm": json_column(base.get("input_norm")),
            "weights_uri": base.get("weights_uri", base.get("weights"))}


# --------------------------------------------------------------------------- a folder of train runs


def is_run_folder(path: Path) -> bool:
    return Path(path).is_dir() and all((Path(path) / name).is_file() for name in RUN_FILES)


def run_folders(path: str) -> List[Path]:
    """The run folders a local folder holds: itself if it is one, else its subfolders that are (by
    name); none for a remote URI or a folder without runs."""
    from . import storage

    if storage.is_remote(str(path)):
        return []
    folder = Path(path).expanduser()
    try:
        if is_run_folder(folder):
            return [folder]
        if not folder.is_dir():
            return []
        return sorted((child for child in folder.iterdir() if not child.name.startswith(".") and is_run_folder(child)),
                      key=lambda child: child.name)
    except OSError:  # a name the file system cannot hold, a folder it cannot read: no runs here
        return []


def run_status(config: Dict[str, Any], files: RunFiles) -> str:
    """COMPLETED when the run wrote its summary after its last epoch; INCOMPLETE otherwise (a run
    stopped midway, which ``parity-ray train`` resumes)."""
    try:
        wanted = TrainConfig.from_dict(config).epochs
    except UsageError:
        wanted = config.get("epochs") or 0
    done = max((row["epoch"] for row in files.history), default=-1)
    return "COMPLETED" if files.summary is not None and files.history and done >= wanted else "INCOMPLETE"
