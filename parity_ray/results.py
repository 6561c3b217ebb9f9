"""Result tables of an experiment: Parquet files under ``<storage>/<name>/tables/``.

``load(path)`` returns them as pandas DataFrames; plain ``pd.read_parquet`` works too.
The columns are documented in ``docs/tables.md``; every file carries
``parity_ray.schema_version`` in its Parquet metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

import pandas as pd

from . import storage
from .errors import UsageError

SCHEMA_VERSION = 2  # 2: codes of every family, erasure patterns up to r (predictions, per-e accuracies)
TABLES = ("runs", "epochs", "predictions", "base_models")  # written by parity-ray tune
SIMULATION_TABLES = ("queries", "simulations", "sweeps")  # one file per simulation / sweep (tables/<name>/<id>.parquet)
# tables/sweeps/<sweep_id>.parquet (parity-ray sweep): one row per grid cell x mode; the columns, in order
# (documented in docs/tables.md). write_sweep refuses a frame with other columns.
SWEEP_COLUMNS = (
    "sweep_id", "cell", "mode", "rate", "clients", "k", "r", "systematic", "straggler", "cluster_size", "apps",
    "replicas_per_app", "replicas", "deadline_ms", "hedge_deadline_ms", "group_wait_ms", "timeout_s", "max_batch_size",
    "batch_wait_ms", "busy_fraction", "restart_s", "service", "seed", "sent", "measured", "direct", "decoded", "failed",
    "hedged", "requests_per_query", "groups_encoded", "groups_skipped", "p50_ms", "p90_ms", "p99_ms", "p999_ms",
    "mean_ms", "throughput_qps", "accuracy", "decoded_accuracy", "run_id", "experiment", "settings", "seconds",
    "versions", "schema_version",
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

    def __getitem__(self, name: str) -> pd.DataFrame:
        return getattr(self, name)

    def items(self) -> Iterator[Tuple[str, pd.DataFrame]]:
        return ((name, getattr(self, name)) for name in TABLES + SIMULATION_TABLES)


def tables_uri(experiment: str) -> str:
    return storage.join(experiment, "tables")


def write_tables(experiment: str, tables: Dict[str, pd.DataFrame]) -> None:
    """Write every table atomically (a reader sees the old file or the new one, never a part)."""
    for name in TABLES:
        storage.write_parquet(
            tables[name],
            storage.join(tables_uri(experiment), f"{name}.parquet"),
            {VERSION_KEY: SCHEMA_VERSION, "parity_ray.table": name},
        )


def write_simulation(experiment: str, simulation_id: str, queries: pd.DataFrame, simulations: pd.DataFrame) -> List[str]:
    """Write one simulation's rows as its own files: ``tables/queries/<id>.parquet`` and
    ``tables/simulations/<id>.parquet``.

    No file is read or rewritten, so simulations running at once lose no row and a new one never
    touches the old ones. Each file is written atomically; returns their URIs.
    """
    written = []
    for name, frame in (("queries", queries), ("simulations", simulations)):
        uri = storage.join(tables_uri(experiment), name, f"{simulation_id}.parquet")
        storage.write_parquet(frame, uri, {VERSION_KEY: SCHEMA_VERSION, "parity_ray.table": name})
        written.append(uri)
    return written


def write_sweep(experiment: str, sweep_id: str, sweeps: pd.DataFrame) -> str:
    """Write one sweep's rows as its own file ``tables/sweeps/<sweep_id>.parquet`` (atomically); its URI."""
    if tuple(sweeps.columns) != SWEEP_COLUMNS:
        raise ValueError(f"sweep rows have columns {list(sweeps.columns)}; expected {list(SWEEP_COLUMNS)}")
    uri = storage.join(tables_uri(experiment), "sweeps", f"{sweep_id}.parquet")
    storage.write_parquet(sweeps, uri, {VERSION_KEY: SCHEMA_VERSION, "parity_ray.table": "sweeps"})
    return uri


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
    for candidate in (tables_uri(path), str(path)):
        if storage.exists(storage.join(candidate, "runs.parquet")):
            return candidate
    raise UsageError(f"'{path}' holds no experiment tables (expected tables/runs.parquet); run 'parity-ray tune' first")


def load(path: str) -> Tables:
    """Load an experiment's tables (local path or ``s3://`` URI) as DataFrames."""
    folder = _locate(str(path))
    frames = {}
    for name in TABLES:
        uri = storage.join(folder, f"{name}.parquet")
        if not storage.exists(uri):
            raise UsageError(f"experiment table '{uri}' is missing; the experiment did not finish writing its tables")
        frames[name] = _read_versioned(uri)
    for name in SIMULATION_TABLES:
        frame = _read_simulation_table(folder, name)
        if frame is not None:
            frames[name] = frame
    return Tables(**frames)


def json_column(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


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
