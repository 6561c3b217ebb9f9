"""Simulation tables without read-modify-write: one file per simulation, both layouts read back."""

from __future__ import annotations

import multiprocessing

import pandas as pd
import pytest

from parity_ray import results, storage
from parity_ray.errors import UsageError


def _experiment(tmp_path):
    frames = {name: pd.DataFrame({"run_id": ["r1"]}) for name in results.TABLES}
    results.write_tables(str(tmp_path), frames)
    return str(tmp_path)


def _rows(simulation_id, n=5):
    queries = pd.DataFrame({"simulation_id": simulation_id, "mode": "coded", "query_id": range(n),
                            "latency_ms": [1.0] * n, "path": ["direct"] * n})
    sims = pd.DataFrame({"simulation_id": [simulation_id], "mode": ["coded"], "p50_ms": [1.0],
                         "schema_version": [results.SCHEMA_VERSION]})
    return queries, sims


def _write_many(args):
    experiment, prefix, count = args
    for i in range(count):
        results.write_simulation(experiment, f"{prefix}-{i}", *_rows(f"{prefix}-{i}"))


def test_simulations_at_once_lose_no_row(tmp_path):
    experiment = _experiment(tmp_path)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_write_many, [(experiment, "a", 10), (experiment, "b", 10)])
    tables = results.load(experiment)
    assert len(tables.queries) == 100 and tables.simulations.simulation_id.nunique() == 20
    assert sorted(storage.list_dir(storage.join(experiment, "tables", "queries")))[:2] == ["a-0.parquet", "a-1.parquet"]


def test_a_new_simulation_never_rewrites_old_files(tmp_path):
    experiment = _experiment(tmp_path)
    results.write_simulation(experiment, "sim-1", *_rows("sim-1"))
    first = tmp_path / "tables" / "queries" / "sim-1.parquet"
    before = first.stat().st_mtime_ns, first.read_bytes()
    results.write_simulation(experiment, "sim-2", *_rows("sim-2"))
    assert (first.stat().st_mtime_ns, first.read_bytes()) == before
    assert set(results.load(experiment).queries.simulation_id) == {"sim-1", "sim-2"}


def test_both_layouts_are_read_together(tmp_path):
    """An experiment simulated by an earlier version (tables/queries.parquet) and by this one."""
    experiment = _experiment(tmp_path)
    old_queries, old_sims = _rows("old", n=3)
    meta = {results.VERSION_KEY: results.SCHEMA_VERSION}
    storage.write_parquet(old_queries, str(tmp_path / "tables" / "queries.parquet"), {**meta, "parity_ray.table": "queries"})
    storage.write_parquet(old_sims, str(tmp_path / "tables" / "simulations.parquet"), {**meta, "parity_ray.table": "simulations"})
    results.write_simulation(experiment, "new", *_rows("new", n=4))
    tables = results.load(experiment)
    assert tables.queries.groupby("simulation_id").size().to_dict() == {"old": 3, "new": 4}
    assert list(tables.simulations.simulation_id) == ["old", "new"]
    # plain pandas reads the folder of one simulation's files too
    assert len(pd.read_parquet(tmp_path / "tables" / "queries")) == 4


def test_a_file_of_another_schema_version_is_refused(tmp_path):
    experiment = _experiment(tmp_path)
    queries, _ = _rows("future")
    storage.write_parquet(queries, str(tmp_path / "tables" / "queries" / "future.parquet"),
                          {results.VERSION_KEY: 99, "parity_ray.table": "queries"})
    with pytest.raises(UsageError, match="schema version 99"):
        results.load(experiment)


def test_no_simulation_yet_gives_empty_frames(tmp_path):
    tables = results.load(_experiment(tmp_path))
    assert tables.queries.empty and tables.simulations.empty
