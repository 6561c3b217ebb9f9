"""Result tables of an experiment: Parquet files under ``<storage>/<name>/tables/``.

``load(path)`` returns them as pandas DataFrames; plain ``pd.read_parquet`` works too.
The columns are documented in ``docs/tables.md``; every file carries
``parity_ray.schema_version`` in its Parquet metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, Iterator, Tuple

import pandas as pd

from . import storage
from .errors import UsageError

SCHEMA_VERSION = 2  # 2: codes of every family, erasure patterns up to r (predictions, per-e accuracies)
TABLES = ("runs", "epochs", "predictions", "base_models")  # written by parity-ray tune
SIMULATION_TABLES = ("queries", "simulations")  # appended by parity-ray simulate
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
    for name in TABLES + SIMULATION_TABLES:
        uri = storage.join(folder, f"{name}.parquet")
        if not storage.exists(uri):
            if name in SIMULATION_TABLES:
                continue
            raise UsageError(f"experiment table '{uri}' is missing; the experiment did not finish writing its tables")
        table = storage.read_parquet(uri)
        version = (table.schema.metadata or {}).get(VERSION_KEY.encode(), b"?").decode()
        if version != str(SCHEMA_VERSION):
            raise UsageError(
                f"table '{uri}' has schema version {version}; this parity_ray reads version {SCHEMA_VERSION}"
            )
        frames[name] = table.to_pandas()
    return Tables(**frames)


def json_column(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)
