"""Every table is written with the schema ``parity_ray.results`` owns; several experiments load as one."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from parity_ray import results
from parity_ray.errors import UsageError
from parity_ray.tune.experiment import TuneOptions, run_experiment

REPO = Path(__file__).resolve().parents[2]
TINY = ["dataset=digits", "base_epochs=3", "epochs=2", "k=2", "encoder=addition"]


def file_schema(uri: str) -> pa.Schema:
    return pq.read_schema(uri).remove_metadata()


def assert_typed(uri: str, name: str) -> pa.Schema:
    written = file_schema(uri)
    stated = results.schema(name, written.names)
    for field in stated:
        assert written.field(field.name).type == field.type, (name, field.name)
    assert not [f.name for f in written if pa.types.is_null(f.type)], name
    return written


@pytest.fixture(scope="module")
def two_experiments(tmp_path_factory, local_ray):
    """Two tiny real experiments side by side (trained through Tune), under one parent folder."""
    storage = tmp_path_factory.mktemp("typed")
    uris = []
    for name, extra in (("a", "seed=0"), ("b", "seed=1")):
        options = TuneOptions(space="quick", name=name, storage=str(storage), overrides=[*TINY, extra], progress=False)
        run_experiment(options, log=lambda _m: None)
        uris.append(options.uri)
    return storage, uris


def test_tune_tables_are_written_with_their_stated_schema(two_experiments):
    _, (a, _b) = two_experiments
    for name in results.TABLES:
        assert_typed(f"{a}/tables/{name}.parquet", name)
    runs = file_schema(f"{a}/tables/runs.parquet")
    # null in every row, still typed: what an analyst filters on
    for column in ("error", "data_root", "base_weights", "base_cache", "max_train_batches"):
        assert not pa.types.is_null(runs.field(column).type), column
    assert runs.field("k").type == pa.int64() and runs.field("best_epoch").type == pa.int64()
    assert results.load(a).runs.error.isna().all()


def test_ints_stay_ints_with_missing_values(tmp_path):
    """An UNAVAILABLE row (no epochs, no base model) beside a finished one: int columns stay int64."""
    from parity_ray.run_tables import run_row

    missing = run_row("x", "r0", {"dataset": "nowhere", "k": 2}, "UNAVAILABLE", "not registered", [], None, space="quick",
                      cpus=1, gpus=0)
    done = {**missing, "run_id": "r1", "status": "COMPLETED", "error": None, "best_epoch": 3, "epochs_done": 3}
    runs = pd.DataFrame([missing, done])
    empty = {"epochs": pd.DataFrame(columns=["run_id", "epoch", "split", "metric", "value"]),
             "predictions": pd.DataFrame(columns=["run_id"]), "base_models": pd.DataFrame(columns=["base_model_id"])}
    results.write_tables(str(tmp_path), {"runs": runs, **empty})
    for name in results.TABLES:
        assert_typed(str(tmp_path / "tables" / f"{name}.parquet"), name)
    back = results.load(str(tmp_path)).runs
    assert str(back.best_epoch.dtype) == "Int64" and back.best_epoch.iloc[1] == 3 and back.best_epoch.isna().iloc[0]
    with pytest.raises(ValueError, match="does not fit its schema"):
        results.to_arrow("runs", runs.assign(best_epoch=[1.5, 2.0]))


def test_simulation_tables_are_typed_also_when_a_column_is_null_in_every_row(tmp_path):
    """An open-loop simulation has no clients; a mode without a code no group ids: still int64."""
    from parity_ray.actors.simulation import SimulationOptions, queries_frame, summarize_mode
    from parity_ray.serving import ServedRun

    records = [{"query_id": i, "send_s": i * 0.01, "receive_s": i * 0.01 + 0.004, "path": "direct", "replica": "base:0",
                "prediction": 1} for i in range(4)]
    frame = queries_frame(records, "sim-1", "none", "r1", np.arange(4), np.ones(4, dtype="int64"),
                          np.ones(4, dtype="int64"), warmup=1)
    run = ServedRun(experiment=str(tmp_path), run_id="r1", config={"k": 2, "r": 1}, base_weights_uri="",
                    parity_checkpoint_uri=None, input_norm={}, degraded_accuracy=None, available_accuracy=None)
    summary = summarize_mode(frame, SimulationOptions(experiment=str(tmp_path)), "none", run, "sim-1", [], 1.0)
    assert summary["clients"] is None
    queries_uri, simulations_uri = results.write_simulation(str(tmp_path), "sim-1", frame, pd.DataFrame([summary]))
    assert_typed(queries_uri, "queries")
    simulations = assert_typed(simulations_uri, "simulations")
    assert simulations.field("clients").type == pa.int64()
    assert file_schema(queries_uri).field("group_id").type == pa.int64()


DOC_TYPES = {"string": pa.string(), "int64": pa.int64(), "int16": pa.int16(), "float64": pa.float64(),
             "float32": pa.float32(), "bool": pa.bool_(), "list<int16>": pa.list_(pa.int16()),
             "list<float32>": pa.list_(pa.float32()), "list<int64>": pa.list_(pa.int64())}


def documented_types() -> dict:
    """``{table: {column: Arrow type}}`` from the column tables of docs/tables.md."""
    text = (REPO / "docs" / "tables.md").read_text()
    stated, table = {}, None
    for line in text.splitlines():
        heading = re.match(r"^## ([a-z_]+)", line)
        if heading:
            table = stated.setdefault(heading.group(1), {})
        elif table is not None and line.startswith("| ") and not line.startswith("| column"):
            cells = [c.strip() for c in line.split("|")[1:-1]]
            for column in re.findall(r"[a-z_0-9]+", cells[0]):
                table[column] = DOC_TYPES[cells[1]]
    return stated


def test_docs_state_every_column_of_every_schema_with_its_type():
    stated = documented_types()
    for name in results.TABLES + results.SIMULATION_TABLES:
        for field in results.schema(name):
            assert stated[name].get(field.name) == field.type, (name, field.name, stated[name].get(field.name))


def test_several_experiments_load_as_one(two_experiments):
    parent, (a, b) = two_experiments
    one = results.load(a)
    assert "experiment" not in one.epochs.columns  # a single experiment: its tables as they are
    for given in ([a, b], f"{parent}/*", str(parent)):
        tables = results.load(given)
        for name in ("runs", "epochs", "predictions", "base_models"):
            frame = tables[name]
            assert frame.columns[0] == "experiment", name
            assert set(frame.experiment) == {"a", "b"}, name
        assert len(tables.epochs) == len(one.epochs) + len(results.load(b).epochs)
    runs = results.load([a, b]).runs
    assert runs.groupby("experiment").seed.first().to_dict() == {"a": 0, "b": 1}


def test_pyarrow_reads_two_experiments_as_one_dataset(two_experiments):
    _, (a, b) = two_experiments
    for name in results.TABLES:
        files = [f"{a}/tables/{name}.parquet", f"{b}/tables/{name}.parquet"]
        together = ds.dataset(files, format="parquet").to_table(use_threads=False)
        assert together.num_rows == sum(pq.read_metadata(f).num_rows for f in files)
        pa.concat_tables([pq.read_table(f, use_threads=False) for f in files])  # identical schemas


def test_loading_nothing_is_one_clear_error(tmp_path):
    with pytest.raises(UsageError, match="no experiment matches"):
        results.load(str(tmp_path / "q*"))
    with pytest.raises(UsageError, match="holds no experiment tables"):
        results.load(str(tmp_path))


def test_a_regression_runs_row_names_its_task_and_mean_ious():
    """The runs row of a box-regression trial carries task and both mean IoUs; a classifier's are null."""
    from parity_ray.run_tables import run_row

    history = [{"epoch": 1, "split": split, "overall_top1": 0.5, "reconstruction_top1": 0.6, "mean_iou": 0.71,
                "reconstruction_mean_iou": 0.8} for split in ("val", "test")]
    boxes = run_row("e", "r", {"dataset": "cub-localization", "k": 2, "r": 1}, "COMPLETED", None, history, {}, space="s")
    assert (boxes["task"], boxes["degraded_mean_iou"], boxes["reconstruction_mean_iou"]) == ("regression", 0.71, 0.8)
    classes = run_row("e", "r", {"dataset": "mnist", "k": 2, "r": 1}, "COMPLETED", None,
                      [{**h, "mean_iou": None, "reconstruction_mean_iou": None} for h in history], {}, space="s")
    assert (classes["task"], classes["degraded_mean_iou"]) == ("classification", None)
    results.to_arrow("runs", pd.DataFrame([boxes, classes]))  # both fit the runs schema
