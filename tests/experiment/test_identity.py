"""Tables that join: one experiment identity in every table, the served run's identity as columns,
run ids that do not depend on where data is read from, ``--json`` nesting objects as objects."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa

from parity_ray import results, storage
from parity_ray.cli.common import json_text
from parity_ray.provenance import stable_hash
from parity_ray.tune.spaces import expand


def test_a_run_id_does_not_depend_on_where_its_data_is_read_from(tmp_path):
    plain = expand("quick", ["dataset=digits"])
    rooted = expand("quick", ["dataset=digits", f"data_root={tmp_path}", f"base_cache={tmp_path}", "download=false"])
    assert [c.run_id for c in plain.cells] == [c.run_id for c in rooted.cells]
    assert rooted.cells[0].config["data_root"] == str(tmp_path)  # still recorded, just not part of the id
    # ids of runs that set no data root are those of earlier versions: the hash of the whole config
    cell = plain.cells[0]
    assert cell.run_id.endswith("-" + stable_hash(cell.config, 8))
    # what a run *is* still changes its id
    other = expand("quick", ["dataset=digits", "seed=1"])
    assert not {c.run_id for c in other.cells} & {c.run_id for c in plain.cells}


def _experiment(root, name="q1"):
    """An experiment folder ``root/name`` with one run, as tune writes it (experiment.json names it)."""
    uri = str(root / name)
    storage.write_bytes(storage.join(uri, "experiment.json"), json.dumps({"name": name}).encode())
    runs = pd.DataFrame([{"experiment": name, "run_id": "digits-base-mlp-k2-r1-addition-x", "status": "COMPLETED",
                          "dataset": "digits", "model": "base-mlp", "k": 2, "r": 1}])
    frames = {"runs": runs, **{t: pd.DataFrame({"run_id": pd.Series(dtype=str)}) for t in results.TABLES[1:]}}
    frames["base_models"] = pd.DataFrame({"base_model_id": pd.Series(dtype=str)})
    results.write_tables(uri, frames)
    return uri


def _write_old(uri: str, table: str, frame: pd.DataFrame) -> None:
    """A file as an earlier version wrote it: only the columns it had then."""
    storage.write_parquet(pa.Table.from_pandas(frame, preserve_index=False), storage.join(uri, "tables", table, "old.parquet"),
                          {results.VERSION_KEY: results.SCHEMA_VERSION, "parity_ray.table": table})


def test_experiment_name_is_the_same_however_the_path_is_spelt(tmp_path, monkeypatch):
    uri = _experiment(tmp_path / "results")
    monkeypatch.chdir(tmp_path)
    assert results.experiment_name(uri) == results.experiment_name("results/q1") == "q1"
    assert results.experiment_name("results/q1/tables") == "q1"
    monkeypatch.chdir(tmp_path / "results" / "q1")
    assert results.experiment_name(".") == "q1"
    ident = results.identity_columns("results/q1", {"dataset": "digits", "model": {"cls": "a.b.C"}, "k": 3, "r": 2})
    assert ident == {"experiment": "q1", "dataset": "digits", "model": "a.b.C", "k": 3, "r": 2}
    assert results.identity_columns(uri, None) == {"experiment": "q1", "dataset": None, "model": None, "k": None, "r": None}


def test_old_simulation_and_sweep_rows_load_with_the_identity_columns(tmp_path):
    uri = _experiment(tmp_path)
    run_id = "digits-base-mlp-k2-r1-addition-x"
    # before: experiment held the path --experiment was given; no dataset, model, k, r
    _write_old(uri, "simulations", pd.DataFrame({"simulation_id": ["s1"], "repeat": [0], "mode": ["coded"], "run_id": [run_id],
                                                 "experiment": [f"{tmp_path}/q1"], "config": ["{}"], "p50_ms": [1.0]}))
    sweep = {c: [None] for c in results.SWEEP_COLUMNS if c not in ("dataset", "model")}
    sweep.update(sweep_id=["w1"], cell=[0], mode=["coded"], k=[4], r=[1], run_id=[run_id], experiment=["q1"])
    _write_old(uri, "sweeps", pd.DataFrame(sweep))
    # and a row as this version writes it, beside the old one
    new = {"simulation_id": "s2", "repeat": 0, "mode": "coded", "run_id": run_id, **results.identity_columns(uri, {
        "dataset": "digits", "model": "base-mlp", "k": 2, "r": 1}), "config": "{}", "p50_ms": 2.0}
    results.write_simulation(uri, "s2", pd.DataFrame({"simulation_id": ["s2"]}), pd.DataFrame([new]))

    tables = results.load(uri)
    sims = tables.simulations.sort_values("simulation_id")
    assert list(sims.columns[:9]) == ["simulation_id", "repeat", "mode", "run_id", "experiment", "dataset", "model", "k", "r"]
    assert sims.experiment.tolist() == ["q1", "q1"] and sims.dataset.tolist() == ["digits", "digits"]
    assert sims.model.tolist() == ["base-mlp"] * 2 and sims.k.tolist() == [2, 2] and sims.r.tolist() == [1, 1]
    assert str(sims.k.dtype) == "Int64"
    assert tuple(tables.sweeps.columns) == results.SWEEP_COLUMNS
    assert tables.sweeps.dataset.tolist() == ["digits"] and tables.sweeps.k.tolist() == [4]  # k, r: the cell's own
    joined = tables.simulations.merge(tables.runs[["experiment", "run_id", "status"]], on=["experiment", "run_id"])
    assert len(joined) == 2


def test_json_output_nests_the_tables_json_columns_as_objects():
    row = {"config": json.dumps({"k": 2, "stragglers": [{"kind": "slow"}]}), "replica_nodes": '{"base:0": "n1"}',
           "versions": '{"ray": "2"}', "straggler": "slow:p=0.3", "settings": "[1, 2]", "mode": "{not json"}
    out = json.loads(json_text({"simulation_id": "s", "modes": [row], "rows": [{"replicates": "[]"}]}))
    mode = out["modes"][0]
    assert mode["config"] == {"k": 2, "stragglers": [{"kind": "slow"}]} and mode["replica_nodes"] == {"base:0": "n1"}
    assert mode["versions"] == {"ray": "2"} and mode["settings"] == [1, 2] and out["rows"][0]["replicates"] == []
    assert mode["straggler"] == "slow:p=0.3" and mode["mode"] == "{not json"  # other strings stay strings
