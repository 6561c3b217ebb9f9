"""A folder of ``parity-ray train`` runs reads as an experiment (issue 29, item 7): the same tables,
typed by the same schemas, as a Tune grid writes, and a report of it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa

from parity_ray import results
from tests.cli.runner import assert_usage_error, cli

TRAIN = ["train", "--dataset", "digits", "--base-epochs", "2", "--epochs", "2", "--no-progress"]


def _train_runs(folder: Path) -> None:
    for flags in (["--encoder", "addition"], ["--encoder", "concatenation", "--k", "3"]):
        done = cli(*TRAIN, *flags, "--out", str(folder))
        assert done.returncode == 0, done.stderr


def test_a_folder_of_train_runs_loads_and_reports_as_an_experiment(tmp_path):
    runs_folder = tmp_path / "runs"
    _train_runs(runs_folder)
    names = sorted(p.name for p in runs_folder.iterdir())
    # an interrupted run: metrics of one epoch of two, no summary yet
    shutil.copytree(runs_folder / names[0], runs_folder / "stopped")
    (runs_folder / "stopped" / "summary.json").unlink()
    history = (runs_folder / "stopped" / "metrics.jsonl").read_text().splitlines()
    (runs_folder / "stopped" / "metrics.jsonl").write_text(
        "\n".join(line for line in history if json.loads(line)["epoch"] <= 1) + "\n")

    tables = results.load(str(runs_folder))
    runs = tables.runs.set_index("run_id")
    assert sorted(runs.index) == sorted(names + ["stopped"])  # a run's id: its folder's name
    assert runs.loc[names, "status"].tolist() == ["COMPLETED", "COMPLETED"] and runs.loc["stopped", "status"] == "INCOMPLETE"
    assert set(runs.experiment) == {"runs"} and set(runs.space) == {"train"}
    summary = json.loads((runs_folder / names[0] / "summary.json").read_text())
    assert runs.loc[names[0], "degraded_accuracy"] == summary["degraded_accuracy"]  # the best epoch train chose
    assert runs.loc[names[0], "best_epoch"] == summary["best_epoch"] and runs.loc[names[0], "encoder"] == "addition"
    assert runs.loc[names[0], "train_seconds"] == summary["train_seconds"]
    assert set(tables.epochs.run_id) == set(runs.index) and set(tables.predictions.run_id) >= set(names)
    assert len(tables.base_models) == 1 and tables.base_models.arch.tolist() == ["base-mlp"]
    # typed as the written tables are: the same schema, so a Tune experiment's files read beside it
    for name in results.TABLES:
        frame = getattr(tables, name)
        typed = results.to_arrow(name, frame).schema
        for column in ("k", "best_epoch", "epochs_done"):
            if column in frame.columns:
                assert typed.field(column).type == pa.int64(), (name, column)
    assert pd.api.types.is_integer_dtype(tables.runs["k"])

    one = results.load(str(runs_folder / names[0]))  # one run folder is an experiment of one run
    assert one.runs.run_id.tolist() == [names[0]]

    report = cli("report", str(runs_folder), "--json")
    assert report.returncode == 0, report.stderr
    summary = json.loads(report.stdout.strip().splitlines()[-1])
    assert summary["runs"] == 3 and summary["status"] == {"COMPLETED": 2, "INCOMPLETE": 1}
    page = (runs_folder / "report" / "index.html").read_text()
    assert names[0] in page and names[1] in page
    assert results.load(str(runs_folder)).runs.run_id.nunique() == 3  # the report folder is not a run


def test_a_folder_with_neither_tables_nor_runs_is_refused_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_usage_error(cli("report", str(tmp_path / "empty")), "holds no experiment tables", "no run folders",
                       "parity-ray train")
