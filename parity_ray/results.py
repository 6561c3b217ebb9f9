"""Result tables of an experiment: Parquet files under ``<storage>/<name>/tables/``.

This module owns every table's schema: each file is written with the explicit Arrow schema of
:func:`schema` (the types ``docs/tables.md`` states: an int column stays int64 with missing
values, no column is ever ``null``-typed), so files of different runs and experiments read as one
(``pyarrow.dataset`` over several experiments, ``pa.concat_tables``).

``load(path)`` returns the tables as pandas DataFrames, of one experiment or of several (a list, a
glob, or a parent folder); plain ``pd.read_parquet`` works too. Every file carries
``parity_ray.schema_version`` in its Parquet metadata.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import json
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import pandas as pd
import pyarrow as pa

from . import storage
from .errors import UsageError

from .provenance import SCHEMA_VERSION  # the version of the tables this module writes and reads

TABLES = ("runs", "epochs", "predictions", "base_models")  # written by parity-ray tune
SIMULATION_TABLES = ("queries", "simulations", "sweeps")  # one file per simulation / sweep (tables/<name>/<id>.parquet)
# tables/sweeps/<sweep_id>.parquet (parity-ray sweep): one row per grid cell x mode; the columns, in order
# (documented in docs/tables.md). write_sweep refuses a frame with other columns.
SWEEP_COLUMNS = (
    "sweep_id", "cell", "mode", "rate", "clients", "k", "r", "systematic", "straggler", "cluster_size", "apps",
    "replicas_per_app", "replicas", "deadline_ms", "hedge_deadline_ms", "group_wait_ms", "timeout_s", "max_batch_size",
    "batch_wait_ms", "busy_fraction", "restart_s", "service", "seed", "sent", "measured", "direct", "decoded", "failed",
    "hedged", "requests_per_query", "groups_encoded", "groups_skipped", "p50_ms", "p90_ms", "p99_ms", "p999_ms",
    "mean_ms", "throughput_qps", "accuracy", "decoded_accuracy", "run_id", "experiment", "dataset", "model", "settings",
    "seconds",
    "versions", "schema_version", "replications", "p50_ms_lo", "p50_ms_hi", "p99_ms_lo", "p99_ms_hi", "p999_ms_lo",
    "p999_ms_hi", "replicates",
)
VERSION_KEY = "parity_ray.schema_version"


@dataclass
class Tables:
    """The experiment's tables; also usable as a mapping (``tables["runs"]``)."""

    runs: pd.DataFrame
    epochs: pd.DataFrame
    predictions: pd.DataFrame
    base_models: pd.DataFrame
    queries: pd.DataFrame = field(default_factory=pd.DataFrame)  # empty until a simulation ran
    simulations: pd.DataFrame = field(default_factory=pd.DataFrame)
    sweeps: pd.DataFrame = field(default_factory=pd.DataFrame)  # empty until a sweep ran
    # Stored paths that lie outside their experiment, refused at load (their cells are then null):
    # ("run", run_id) / ("base", base_model_id) -> the one-line reason. Readers raise it when they need the file.
    refused: Dict[Tuple[str, str], str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> pd.DataFrame:
        return getattr(self, name)

    def items(self) -> Iterator[Tuple[str, pd.DataFrame]]:
        return ((name, getattr(self, name)) for name in TABLES + SIMULATION_TABLES)


# --------------------------------------------------------------------------- schemas

STR, INT, FLOAT, BOOL = pa.string(), pa.int64(), pa.float64(), pa.bool_()
F32, I16 = pa.float32(), pa.int16()

# runs: the columns before and after the TrainConfig keys (which come from the dataclass itself).
_RUNS_HEAD = [("experiment", STR), ("run_id", STR), ("status", STR), ("error", STR)]
_RUNS_TAIL = [
    ("config_json", STR), ("space", STR), ("base_model_id", STR),
    ("available_accuracy", FLOAT), ("majority_accuracy", FLOAT), ("degraded_accuracy", FLOAT), ("reconstruction_accuracy", FLOAT),
    ("degraded_top5", FLOAT), ("task", STR), ("degraded_mean_iou", FLOAT), ("reconstruction_mean_iou", FLOAT),
    ("code_family", STR), ("worker", STR), ("redundancy", FLOAT),
    ("parity_arch", STR), ("parity_params", INT), ("parity_flops", INT),
    ("all_accuracy_e0", FLOAT),
    *[(f"{m}_e{e}", FLOAT) for e in (1, 2, 3) for m in ("degraded_accuracy", "all_accuracy")],
    ("byzantine_accuracy", FLOAT), ("byzantine_accuracy_unlocated", FLOAT), ("byzantine_located", FLOAT),
    *[(f"patterns_scored_e{e}", INT) for e in (1, 2, 3)],
    ("best_epoch", INT), ("best_val_reconstruction", FLOAT), ("val_degraded_accuracy", FLOAT),
    ("final_degraded_accuracy", FLOAT), ("final_reconstruction_accuracy", FLOAT), ("epochs_done", INT),
    ("train_seconds", FLOAT), ("wall_seconds", FLOAT), ("cpus", FLOAT), ("gpus", FLOAT),
    ("node_id", STR), ("node_ip", STR), ("hostname", STR), ("versions", STR), ("checkpoint_uri", STR),
    ("trial_id", STR), ("schema_version", INT),
]
RUNS_CONFIG_EXCLUDED = ("out", "name")  # where a run was written, not what it is
# Per-e measures beyond e = 3 (runs with r > 3) are float columns too.
_RUNS_DYNAMIC = re.compile(r"^(degraded_accuracy|all_accuracy|reconstruction_top1)_e\d+$")
_RUNS_DYNAMIC_COUNTS = re.compile(r"^patterns_scored_e\d+$")

_FIXED: Dict[str, List[Tuple[str, pa.DataType]]] = {
    "epochs": [("run_id", STR), ("epoch", INT), ("split", STR), ("metric", STR), ("value", FLOAT)],
    "predictions": [
        ("run_id", STR), ("group_id", INT), ("erasures", I16), ("pattern", STR), ("position", I16),
        ("test_index", INT), ("label", INT), ("base_prediction", INT), ("decoded_prediction", INT),
        ("base_top_probability", F32), ("decoded_top_probability", F32), ("kl_base_decoded", F32),
        ("base_top5", pa.list_(I16)), ("base_top5_probabilities", pa.list_(F32)),
        ("decoded_top5", pa.list_(I16)), ("decoded_top5_probabilities", pa.list_(F32)),
        # regression runs (boxes) instead of the class columns above
        ("true_box", pa.list_(F32)), ("base_box", pa.list_(F32)), ("decoded_box", pa.list_(F32)),
        ("iou_decoded_true", F32), ("iou_base_true", F32), ("iou_decoded_base", F32),
    ],
    "base_models": [
        ("base_model_id", STR), ("dataset", STR), ("arch", STR), ("seed", INT), ("source", STR),
        ("val_accuracy", FLOAT), ("test_accuracy", FLOAT), ("train_accuracy", FLOAT), ("train_seconds", FLOAT),
        ("epochs", INT), ("input_norm", STR), ("weights_uri", STR),
    ],
    "queries": [
        ("simulation_id", STR), ("repeat", INT), ("mode", STR), ("run_id", STR), ("query_id", INT), ("test_index", INT),
        ("group_id", INT), ("position", INT), ("send_s", FLOAT), ("receive_s", FLOAT), ("path", STR),
        ("replica", STR), ("hedged", BOOL), ("reason", STR), ("label", INT), ("base_prediction", INT),
        ("prediction", INT), ("coder_seconds", FLOAT), ("deadline_ms", FLOAT), ("warmup", BOOL), ("latency_ms", FLOAT),
        ("correct", BOOL), ("agrees_with_base", BOOL),
        ("group_members", pa.list_(INT)), ("decoded_from", pa.list_(I16)), ("output", pa.list_(F32)),
        ("frontend_ms", FLOAT),
    ],
    "simulations": [
        ("simulation_id", STR), ("repeat", INT), ("mode", STR), ("run_id", STR), ("experiment", STR),
        ("dataset", STR), ("model", STR), ("k", INT), ("r", INT), ("config", STR),
        ("straggler", STR), ("rate", FLOAT), ("clients", INT), ("deadline_ms", FLOAT),
        ("sent", INT), ("measured", INT), ("direct", INT), ("decoded", INT), ("failed", INT), ("hedged", INT),
        ("p50_ms", FLOAT), ("p90_ms", FLOAT), ("p99_ms", FLOAT), ("p999_ms", FLOAT), ("mean_ms", FLOAT),
        ("throughput_qps", FLOAT), ("offered_qps", FLOAT), ("accuracy", FLOAT), ("agreement_with_base", FLOAT),
        ("decoded_accuracy", FLOAT), ("decoded_agreement_with_base", FLOAT), ("frontend_coder_ms", FLOAT),
        ("frontend_coder_cpu_ms", FLOAT), ("groups_encoded", INT), ("groups_skipped", INT),
        ("wall_seconds", FLOAT), ("replica_nodes", STR), ("versions", STR), ("schema_version", INT),
        ("p50_ms_lo", FLOAT), ("p50_ms_hi", FLOAT), ("p99_ms_lo", FLOAT), ("p99_ms_hi", FLOAT),
        ("p999_ms_lo", FLOAT), ("p999_ms_hi", FLOAT),
    ],
}
_SWEEP_TYPES = {
    **{c: STR for c in ("sweep_id", "mode", "straggler", "service", "run_id", "experiment", "dataset", "model",
                        "settings", "versions", "replicates")},
    **{c: FLOAT for c in ("rate", "deadline_ms", "hedge_deadline_ms", "group_wait_ms", "timeout_s", "batch_wait_ms",
                          "busy_fraction", "restart_s", "requests_per_query", "p50_ms", "p90_ms", "p99_ms", "p999_ms",
                          "mean_ms", "throughput_qps", "accuracy", "decoded_accuracy", "seconds", "p50_ms_lo", "p50_ms_hi",
                          "p99_ms_lo", "p99_ms_hi", "p999_ms_lo", "p999_ms_hi")},
    "systematic": BOOL,
}
_FIXED["sweeps"] = [(c, _SWEEP_TYPES.get(c, INT)) for c in SWEEP_COLUMNS]  # the rest are counts and ints


def _config_type(field: dataclasses.Field) -> pa.DataType:
    """Arrow type of a TrainConfig key as the runs table records it (class-specs as their name)."""
    text = str(field.type)
    inner = text[len("Optional[") : -1] if text.startswith("Optional[") else text
    return {"int": INT, "float": FLOAT, "bool": BOOL}.get(inner, STR)


def _runs_fields() -> List[Tuple[str, pa.DataType]]:
    from .config import TrainConfig

    config = [(f.name, _config_type(f)) for f in dataclasses.fields(TrainConfig) if f.name not in RUNS_CONFIG_EXCLUDED]
    return _RUNS_HEAD + config + _RUNS_TAIL


def schema(name: str, columns: Iterable[str] = ()) -> pa.Schema:
    """The Arrow schema table ``name`` is written with.

    ``columns`` (a frame's columns) adds the per-e measures of runs with r > 3; columns that no
    schema names are not part of it (:func:`to_arrow` keeps them with their inferred type).
    """
    if name == "runs":
        fields = _runs_fields()
        known = {n for n, _ in fields}
        fields += [(c, FLOAT) for c in columns if c not in known and _RUNS_DYNAMIC.match(str(c))]
        fields += [(c, INT) for c in columns if c not in known and _RUNS_DYNAMIC_COUNTS.match(str(c))]
    elif name in _FIXED:
        fields = list(_FIXED[name])
    else:
        raise ValueError(f"unknown table '{name}'; valid choices: {', '.join(TABLES + SIMULATION_TABLES)}")
    return pa.schema(fields)


def to_arrow(name: str, frame: pd.DataFrame) -> pa.Table:
    """``frame`` as an Arrow table of ``schema(name)``: every schema column present (all-null when
    the frame lacks it), each of its stated type.

    Ints stay ints with missing values (nullable int64 in pandas, not float); a value of the wrong
    kind (1.5 in an int column) fails here, at the writer, not in a reader. A column that no schema
    names keeps its inferred type (an all-null one becomes string): a new metric never fails a run.
    """
    target = schema(name, frame.columns)
    frame = frame.copy()
    for column in target.names:
        if column not in frame.columns:
            frame[column] = None
        elif pa.types.is_integer(target.field(column).type) and frame[column].isna().any():
            frame[column] = frame[column].astype("Int64")  # float NaN or object None -> <NA>, strictly
    extra = [c for c in frame.columns if c not in target.names]
    if extra:
        inferred = pa.Schema.from_pandas(frame[extra], preserve_index=False)
        target = pa.schema(list(target) + [pa.field(f.name, STR if pa.types.is_null(f.type) else f.type)
                                            for f in inferred if f.name in extra])
    try:
        return pa.Table.from_pandas(frame[target.names], schema=target, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise ValueError(f"table '{name}' does not fit its schema: {exc}") from None


# --------------------------------------------------------------------------- writing


def tables_uri(experiment: str) -> str:
    return storage.join(experiment, "tables")


def _write(frame: pd.DataFrame, uri: str, name: str, experiment: str) -> None:
    storage.check_inside(experiment, uri)
    storage.write_parquet(to_arrow(name, frame), uri, {VERSION_KEY: SCHEMA_VERSION, "parity_ray.table": name})


def write_tables(experiment: str, tables: Dict[str, pd.DataFrame]) -> None:
    """Write every table atomically (a reader sees the old file or the new one, never a part), inside
    the experiment: a link in its folder that leads elsewhere is refused (docs/security.md)."""
    for name in TABLES:
        _write(tables[name], storage.join(tables_uri(experiment), f"{name}.parquet"), name, experiment)


def check_table_targets(experiment: str, *names: str) -> None:
    """Refuse, before any work is done, table folders of ``experiment`` that a write would leave it
    through (a link to elsewhere): the same check every write makes, made up front."""
    for name in names or TABLES:
        storage.check_inside(experiment, storage.join(tables_uri(experiment), name, "probe.parquet"))


def write_simulation(experiment: str, simulation_id: str, queries: pd.DataFrame, simulations: pd.DataFrame) -> List[str]:
    """Write one simulation's rows as its own files: ``tables/queries/<id>.parquet`` and
    ``tables/simulations/<id>.parquet``.

    No file is read or rewritten, so simulations running at once lose no row and a new one never
    touches the old ones. Each file is written atomically; returns their URIs.
    """
    written = []
    for name, frame in (("queries", queries), ("simulations", simulations)):
        uri = storage.join(tables_uri(experiment), name, f"{simulation_id}.parquet")
        _write(frame, uri, name, experiment)
        written.append(uri)
    return written


def write_sweep(experiment: str, sweep_id: str, sweeps: pd.DataFrame) -> str:
    """Write one sweep's rows as its own file ``tables/sweeps/<sweep_id>.parquet`` (atomically); its URI."""
    if tuple(sweeps.columns) != SWEEP_COLUMNS:
        raise ValueError(f"sweep rows have columns {list(sweeps.columns)}; expected {list(SWEEP_COLUMNS)}")
    uri = storage.join(tables_uri(experiment), "sweeps", f"{sweep_id}.parquet")
    _write(sweeps, uri, "sweeps", experiment)
    return uri


# --------------------------------------------------------------------------- reading


def _read_versioned(uri: str) -> pd.DataFrame:
    table = storage.read_parquet(uri)
    version = (table.schema.metadata or {}).get(VERSION_KEY.encode(), b"?").decode()
    if version != str(SCHEMA_VERSION):
        raise UsageError(f"table '{uri}' has schema version {version}; this parity_ray reads version {SCHEMA_VERSION}")
    return table.to_pandas()


def _read_simulation_table(folder: str, name: str) -> Optional[pd.DataFrame]:
    """Both layouts: the single file ``<name>.parquet`` of earlier versions (appended to by
    rewriting) and the folder ``<name>/`` of one file per simulation; rows of both, oldest first."""
    frames = []
    single = storage.join(folder, f"{name}.parquet")
    if storage.exists(single):
        frames.append(_read_versioned(single))
    for entry in storage.list_dir(storage.join(folder, name)):
        if entry.endswith(".parquet") and not entry.startswith("."):
            frames.append(_read_versioned(storage.join(folder, name, entry)))
    frames = [f for f in frames if len(f.columns)]
    if not frames:
        return None
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _locate(path: str) -> str:
    """Accept the experiment folder or its ``tables/`` folder."""
    folder = _tables_folder(path)
    if folder is None and not storage.exists(path):
        raise UsageError(f"experiment '{path}' does not exist: it holds no experiment tables")
    if folder is None:
        raise UsageError(f"'{path}' holds no experiment tables (expected tables/runs.parquet) and no run folders "
                         "(config.json and metrics.jsonl); run 'parity-ray tune' or 'parity-ray train' first")
    return folder


def _holds_train_runs(path: str) -> bool:
    """A folder of ``parity-ray train`` runs (or one run folder) without tables of its own."""
    from .run_tables import run_folders

    return _tables_folder(path) is None and bool(run_folders(path))


def tables_from_run_folders(path: str, experiment: str) -> Dict[str, pd.DataFrame]:
    """The ``runs``, ``epochs``, ``predictions`` and ``base_models`` tables of the ``parity-ray train``
    runs under ``path`` (``run_tables.run_folders``), built as ``parity-ray tune`` builds them for its
    trials and typed by the same schemas. A run's id is its folder's name (train's ``run``)."""
    from .run_tables import BASE_MODEL_COLUMNS, TRAIN_SPACE, base_model_row, epoch_rows, read_run_files, run_folders, run_row, run_status

    run_rows, epochs, predictions, bases = [], [], [], {}
    for folder in run_folders(path):
        files = read_run_files(folder)
        config = dict(files.record.get("config") or {})
        summary = files.summary or {}
        measured = {"train_seconds": summary.get("train_seconds"),
                    "time_total_s": None if files.summary is None else
                    (summary.get("startup_seconds") or 0) + (summary.get("train_seconds") or 0)}
        run_rows.append(run_row(experiment, folder.name, config, run_status(config, files), None, files.history,
                                files.record, space=TRAIN_SPACE, checkpoint_uri=str(folder), metrics=measured))
        epochs.extend(epoch_rows(folder.name, files.history))
        if files.predictions is not None:
            predictions.append(files.predictions.assign(run_id=folder.name))
        base = files.record.get("base_model") or {}
        if base.get("id"):
            bases.setdefault(base["id"], base_model_row(base))
    frame = pd.concat(predictions, ignore_index=True) if predictions else empty_predictions()
    frames = {
        "runs": pd.DataFrame(run_rows),
        "epochs": pd.DataFrame(epochs, columns=["run_id", "epoch", "split", "metric", "value"]),
        "predictions": frame[["run_id"] + [c for c in frame.columns if c != "run_id"]],
        "base_models": pd.DataFrame(list(bases.values()), columns=BASE_MODEL_COLUMNS),
    }
    return {name: to_arrow(name, table).to_pandas() for name, table in frames.items()}


def _tables_folder(path: str) -> Optional[str]:
    for candidate in (tables_uri(path), str(path)):
        if storage.exists(storage.join(candidate, "runs.parquet")):
            return candidate
    return None


Experiments = Union[str, "os.PathLike[str]", Sequence[str]]


def _has_glob(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def _glob(pattern: str) -> List[str]:
    """Local paths or ``s3://`` URIs matching ``pattern`` (remote: wildcards in the last part only)."""
    if not storage.is_remote(pattern):
        return sorted(glob.glob(str(Path(pattern).expanduser())))
    parent, leaf = pattern.rstrip("/").rsplit("/", 1)
    if _has_glob(parent):
        raise UsageError(f"'{pattern}': on remote storage only the last part of a path may hold wildcards")
    return [storage.join(parent, name) for name in storage.list_dir(parent) if fnmatch.fnmatchcase(name, leaf)]


def experiment_paths(path: Experiments) -> Tuple[List[str], bool]:
    """``(experiment folders, several)``: what ``load`` reads, and whether ``path`` named a set of
    experiments (a list, a glob, a parent folder) rather than one."""
    if isinstance(path, (list, tuple)):
        found = [p for item in path for p in experiment_paths(item)[0]]
        if not found:
            raise UsageError("no experiments given; pass experiment folders, a glob, or their parent folder")
        return list(dict.fromkeys(found)), True
    text = str(path)
    if _has_glob(text):
        found = [p for p in _glob(text) if _tables_folder(p) is not None]
        if not found:
            raise UsageError(f"no experiment matches '{text}' (a match must hold tables/runs.parquet)")
        return found, True
    if _tables_folder(text) is not None or _holds_train_runs(text):
        return [text], False
    children = [storage.join(text, name) for name in storage.list_dir(text) if not name.startswith(".")]
    found = [c for c in children if _tables_folder(c) is not None]
    if not found:
        _locate(text)  # the single-experiment message: nothing here, nothing below
    return found, True


def experiment_labels(paths: List[str]) -> List[str]:
    """Each experiment's name (its folder name); the paths themselves where two names collide: the
    ``experiment`` column of the tables that ``load`` reads from several experiments."""
    names = [_experiment_name(p) for p in paths]
    return names if len(set(names)) == len(names) else [str(p) for p in paths]


def _experiment_name(path: str) -> str:
    text = str(path).rstrip("/") if storage.is_remote(path) else str(Path(path).expanduser().resolve())
    parent, name = posixpath.split(text)
    return posixpath.basename(parent) if name == "tables" else name


def _load_one(path: str) -> Dict[str, Any]:
    if _holds_train_runs(str(path)):  # train's runs: their tables built from their files, here
        folder = tables_uri(str(path))
        frames: Dict[str, Any] = tables_from_run_folders(str(path), recorded_name(str(Path(path).expanduser().resolve())))
    else:
        folder = _locate(str(path))
        frames = {}
    for name in TABLES:
        if name in frames:
            continue
        uri = storage.join(folder, f"{name}.parquet")
        if not storage.exists(uri):
            raise UsageError(f"experiment table '{uri}' is missing; the experiment did not finish writing its tables")
        frames[name] = _read_versioned(uri)
    for name in SIMULATION_TABLES:
        frame = _read_simulation_table(folder, name)
        if frame is not None:
            frames[name] = frame
    root = _experiment_root(folder)
    _complete_identity(frames, recorded_name(root))
    frames["refused"] = _confine_stored_paths(root, frames)
    return frames


def _experiment_root(tables_folder: str) -> str:
    text = str(tables_folder).rstrip("/")
    return text.rsplit("/", 1)[0] if text.endswith("/tables") or text.endswith(os.sep + "tables") else text


def recorded_name(root: str) -> str:
    """The name an experiment was created under: its record's ``name``, else its folder's name."""
    record = storage.join(root, "experiment.json")
    try:
        name = json.loads(storage.read_bytes(record)).get("name") if storage.exists(record) else None
    except (OSError, ValueError, AttributeError):
        name = None
    valid = isinstance(name, str) and name and "/" not in name and name not in (".", "..")
    return name if valid else posixpath.basename(str(root).rstrip("/"))


# --------------------------------------------------------------------------- identity

# The columns that name what a simulation or sweep served, each as ``runs`` holds it: the experiment
# (its name, as in ``runs.experiment``), then the served run's own columns.
RUN_IDENTITY = ("dataset", "model", "k", "r")


def experiment_name(path: str) -> str:
    """The canonical identity of the experiment at ``path`` (its folder or ``tables/`` folder): the
    name it was created under (``experiment.json``), else its folder's name. ``runs``,
    ``simulations`` and ``sweeps`` all hold it in ``experiment``, however the path was spelt
    (relative, absolute, ``s3://``), so a copied or moved experiment keeps its identity."""
    text = str(path) if storage.is_remote(str(path)) else str(Path(path).expanduser().resolve())
    return recorded_name(_experiment_root(_tables_folder(text) or text))


def identity_columns(experiment: str, config: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """``experiment`` (:func:`experiment_name`) and the served run's ``dataset, model, k, r`` as the
    ``runs`` table records them (a class-spec as its name); null without a run (``config`` None)."""
    from .registry import spec_name

    config = config or {}
    model = config.get("model")
    return {"experiment": experiment_name(experiment), "dataset": config.get("dataset"),
            "model": spec_name(model) if isinstance(model, dict) else model,
            "k": None if config.get("k") is None else int(config["k"]),
            "r": None if config.get("r") is None else int(config["r"])}


def _is_path(value) -> bool:
    return value is None or value != value or "/" in str(value) or os.sep in str(value)


def _complete_identity(frames: Dict[str, Any], name: str) -> None:
    """Simulation and sweep rows as this version writes them, also from files written before their
    identity columns: an ``experiment`` that was the path ``--experiment`` was given becomes the
    experiment's name; a missing ``dataset, model, k, r`` comes from the run it names (``runs``)."""
    runs = frames["runs"].drop_duplicates("run_id").set_index("run_id") if "run_id" in frames["runs"] else None
    for table, wanted in (("simulations", RUN_IDENTITY), ("sweeps", ("dataset", "model"))):
        frame = frames.get(table)
        if frame is None or "run_id" not in frame.columns:
            continue
        frame = frame.copy()
        if "experiment" in frame.columns:
            frame["experiment"] = [name if _is_path(v) else v for v in frame["experiment"]]
        for column in wanted:
            known = runs[column] if runs is not None and column in runs.columns else pd.Series(dtype=object)
            recorded = frame["run_id"].map(known)
            frame[column] = frame[column].where(frame[column].notna(), recorded) if column in frame.columns else recorded
        for column in ("k", "r"):
            if column in wanted:
                frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("Int64")
        names = [n for n in schema(table).names if n in frame.columns]
        frames[table] = frame[names + [c for c in frame.columns if c not in names]]


def _confine_stored_paths(root: str, frames: Dict[str, Any]) -> Dict[Tuple[str, str], str]:
    """Point every stored weights / checkpoint path at a file inside the experiment (a moved or copied
    experiment: its own copy), or null it and record why (``Tables.refused``); docs/security.md."""
    from .machine import cache_dir

    name, also = recorded_name(root), (str(cache_dir("base_models")),)
    refused: Dict[Tuple[str, str], str] = {}
    for table, column, kind, key, what in (("runs", "checkpoint_uri", "run", "run_id", "run '{}': stored checkpoint"),
                                           ("base_models", "weights_uri", "base", "base_model_id", "base model '{}': stored weights")):
        frame = frames[table]
        if column not in frame.columns:
            continue
        values = []
        for ident, uri in zip(frame[key], frame[column]):
            if uri is None or uri != uri or not str(uri):
                values.append(uri)
                continue
            try:
                values.append(storage.confine_stored(root, str(uri), what.format(ident), name, also=also))
            except UsageError as exc:
                refused[(kind, str(ident))] = str(exc)
                values.append(None)
        frames[table] = frame.assign(**{column: pd.Series(values, index=frame.index, dtype=object)})
    return refused


def load_experiment(path: str) -> Tables:
    """The tables of exactly one experiment (its folder or ``tables/`` folder): what a command that
    serves, simulates or reports *an* experiment reads. A parent folder of several is refused, never
    merged, so a result is not written into the wrong place."""
    return Tables(**_load_one(str(path)))


def load(path: Experiments) -> Tables:
    """Load the tables of one experiment or of several, as DataFrames (local paths or ``s3://`` URIs).

    ``path`` is one experiment folder (or its ``tables/`` folder): its tables as they are. Or
    several: a list of folders, a glob (``results/q*``), or a parent folder whose subfolders are
    experiments; then each table holds every experiment's rows, tagged by an ``experiment``
    column (first; the experiment's folder name, or its path where two names collide). Join
    tables of several experiments on ``(experiment, run_id)``: a run id names a config, and
    two experiments may hold the same one.
    """
    paths, several = experiment_paths(path)
    if not several:
        return Tables(**_load_one(paths[0]))
    loaded = [_load_one(p) for p in paths]
    merged: Dict[str, Any] = {"refused": {key: why for frames in loaded for key, why in frames["refused"].items()}}
    for name in TABLES + SIMULATION_TABLES:
        parts = [_tagged(frames[name], label) for frames, label in zip(loaded, experiment_labels(paths))
                 if name in frames]
        if parts:
            merged[name] = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    return Tables(**merged)


def _tagged(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    frame = frame.drop(columns=["experiment"], errors="ignore")
    frame.insert(0, "experiment", label)
    return frame


# The string columns that hold JSON (provenance.json_column): a table keeps them as strings (one Arrow type for
# any content), a JSON output nests them as the objects they are (decode_json_columns).
JSON_COLUMNS = frozenset({"config", "config_json", "replica_nodes", "versions", "settings", "service", "replicates",
                          "input_norm"})


def decode_json_columns(value: Any) -> Any:
    """``value`` (a summary: dicts, lists, table rows) with every ``JSON_COLUMNS`` string parsed into
    the object it holds, at any depth; other values as they are."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in JSON_COLUMNS and isinstance(item, str) and item[:1] in ("{", "["):
                try:
                    item = json.loads(item)
                except ValueError:
                    pass
            out[key] = decode_json_columns(item)
        return out
    if isinstance(value, (list, tuple)):
        return [decode_json_columns(item) for item in value]
    return value


# The run columns "best" is chosen by, in order of preference: validation metrics only (test
# metrics are recorded, never selected on). Tables written before ``val_degraded_accuracy``
# existed fall back to the best epoch's validation reconstruction accuracy.
RUN_SELECTION_COLUMNS = ("val_degraded_accuracy", "best_val_reconstruction")


def selection_column(runs: pd.DataFrame) -> str:
    """The validation column that ranks these runs (see ``RUN_SELECTION_COLUMNS``)."""
    for column in RUN_SELECTION_COLUMNS:
        if column in runs.columns and runs[column].notna().any():
            return column
    return RUN_SELECTION_COLUMNS[0]


def rank_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Completed runs, best first: by validation accuracy, then run id (a stable tie-break).

    The one definition of "best" for the CLI, the tables' summaries, the report and ``--run best``.
    """
    done = runs[runs["status"] == "COMPLETED"] if "status" in runs.columns else runs
    if done.empty:
        return done
    column = selection_column(done)
    if column not in done.columns:
        return done.sort_values("run_id")
    return done.sort_values([column, "run_id"], ascending=[False, True], na_position="last")


def best_run(runs: pd.DataFrame) -> Optional[pd.Series]:
    """The best completed run (``rank_runs``), or None when none completed."""
    ranked = rank_runs(runs)
    return None if ranked.empty else ranked.iloc[0]


def empty_predictions() -> pd.DataFrame:
    """A predictions table with no rows: its class columns, typed (a grid where no run got that far)."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in (
        ("run_id", "object"), ("group_id", "int64"), ("erasures", "int16"), ("pattern", "object"), ("position", "int16"),
        ("test_index", "int64"), ("label", "int64"), ("base_prediction", "int64"), ("decoded_prediction", "int64"),
        ("base_top_probability", "float32"), ("decoded_top_probability", "float32"), ("kl_base_decoded", "float32"),
        ("base_top5", "object"), ("base_top5_probabilities", "object"), ("decoded_top5", "object"),
        ("decoded_top5_probabilities", "object"))})
