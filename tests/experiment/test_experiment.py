"""Tune experiments in-process on a local Ray: tables, resume, retries, errored trials."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from parity_ray import results
from parity_ray.errors import UsageError
from parity_ray.tune.experiment import TuneOptions, run_experiment

DIGITS = ["dataset=digits", "base_epochs=10"]


def options(tmp_path, name, *overrides, **kwargs):
    return TuneOptions(space="quick", name=name, storage=str(tmp_path), overrides=[*DIGITS, *overrides], progress=False, **kwargs)


def assert_complete_tables(tables, n_trials):
    runs, epochs = tables.runs, tables.epochs
    assert len(runs) == n_trials and runs["run_id"].is_unique
    assert not epochs.duplicated(["run_id", "epoch", "split", "metric"]).any()
    for _, run in runs[runs.status == "COMPLETED"].iterrows():
        mine = epochs[epochs.run_id == run.run_id]
        assert sorted(mine.epoch.unique()) == list(range(1, run.epochs + 1))
        assert set(mine.split) == {"train", "val", "test"}


def test_grid_writes_complete_tables_and_resume_adds_nothing(tmp_path, local_ray):
    opts = options(tmp_path, "grid", "epochs=5", "k=[2,3]", "encoder=addition")
    summary = run_experiment(opts, log=lambda _m: None)
    assert summary["status"] == {"COMPLETED": 2}
    tables = results.load(opts.uri)
    assert_complete_tables(tables, 2)
    runs = tables.runs.set_index("run_id")
    assert set(runs.k) == {2, 3} and set(runs.dataset) == {"digits"}
    for column in ("lr", "batch_size", "loss", "seed", "epochs", "base_model_id", "node_id", "checkpoint_uri", "versions", "wall_seconds"):
        assert runs[column].notna().all(), column
    assert (runs.batch_size == runs.k.map({2: 64, 3: 32})).all()  # resolved paper defaults
    assert json.loads(runs.versions.iloc[0])["ray"].startswith("2.60")
    assert (runs.available_accuracy > 0.9).all() and (runs.degraded_accuracy > 0.15).all()
    # predictions: every test image at every erasure position of its group, for each run
    preds = tables.predictions
    for run_id, run in runs.iterrows():
        mine = preds[preds.run_id == run_id]
        assert len(mine) == -(-297 // run.k) * run.k  # groups wrap so that every test image is scored
        assert set(mine.test_index) == set(range(297))
        assert ((mine.base_prediction == mine.decoded_prediction).mean() - run.reconstruction_accuracy) < 1e-9
    base = tables.base_models
    assert len(base) == 1 and base.source.iloc[0] == "trained" and base.test_accuracy.iloc[0] > 0.9
    assert set(runs.base_model_id) == set(base.base_model_id)
    # plain pandas reads the same files
    assert len(pd.read_parquet(f"{opts.uri}/tables/runs.parquet")) == 2

    again = options(tmp_path, "grid", "epochs=5", "k=[2,3]", "encoder=addition", resume=True)
    run_experiment(again, log=lambda _m: None)
    resumed = results.load(opts.uri)
    assert_complete_tables(resumed, 2)
    pd.testing.assert_frame_equal(
        resumed.epochs.sort_values(["run_id", "epoch", "split", "metric"]).reset_index(drop=True),
        tables.epochs.sort_values(["run_id", "epoch", "split", "metric"]).reset_index(drop=True),
    )


def test_failing_trials_are_retried_then_recorded_without_stopping_the_grid(tmp_path, local_ray):
    marker = tmp_path / "crashed-once"
    crash_once = json.dumps({"cls": "tests.experiment.faulty.CrashOnceMLP", "marker": str(marker), "after_calls": 25})
    always = json.dumps({"cls": "tests.experiment.faulty.AlwaysCrashMLP"})
    opts = options(tmp_path, "faults", "epochs=4", "encoder=addition", "k=2",
                   f"parity_model=[None, {crash_once}, {always}]", max_failures=1)
    summary = run_experiment(opts, log=lambda _m: None)
    assert marker.exists()  # the injected failure did happen
    tables = results.load(opts.uri)
    assert_complete_tables(tables, 3)
    status = dict(zip(tables.runs.parity_model, tables.runs.status))
    assert status["base-mlp"] == "COMPLETED"
    assert status["tests.experiment.faulty.CrashOnceMLP"] == "COMPLETED"  # retried from its checkpoint
    assert status["tests.experiment.faulty.AlwaysCrashMLP"] == "ERROR"
    errored = tables.runs[tables.runs.status == "ERROR"].iloc[0]
    assert "injected failure" in errored.error
    assert summary["status"] == {"COMPLETED": 2, "ERROR": 1}
    # the retried run's history has each epoch once, identical to an uninterrupted run of the same config
    ok = tables.epochs.merge(tables.runs[["run_id", "parity_model"]], on="run_id")
    clean = ok[ok.parity_model == "base-mlp"].drop(columns=["run_id", "parity_model"]).reset_index(drop=True)
    retried = ok[ok.parity_model == "tests.experiment.faulty.CrashOnceMLP"].drop(columns=["run_id", "parity_model"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(retried, clean)  # same arch and seed: resuming from the checkpoint is exact


def test_a_usage_error_in_a_trial_stops_the_grid_unretried_in_one_line(tmp_path, local_ray):
    marker = tmp_path / "attempts"
    bad = json.dumps({"cls": "tests.experiment.faulty.BadInputMLP", "marker": str(marker)})
    opts = options(tmp_path, "bad", "epochs=2", "encoder=addition", "k=2", f"parity_model={bad}", max_failures=3)
    with pytest.raises(UsageError) as raised:
        run_experiment(opts, log=lambda _m: None)
    message = str(raised.value)
    assert "\n" not in message and "valid widths: multiples of 2" in message and message.startswith("digits-base-mlp-k2")
    assert marker.read_text().count("attempt") == 1  # not retried, although max_failures allows 3
    assert not (tmp_path / "bad").exists()  # nothing half-written: the same command, fixed, runs


def test_unavailable_cells_get_rows_not_silence(tmp_path, local_ray):
    space = tmp_path / "mixed.py"
    space.write_text(
        "from ray import tune\n"
        "defaults = {'epochs': 1, 'base_epochs': 3, 'max_train_batches': 2}\n"
        "param_space = {'cell': tune.grid_search([{'dataset': 'digits'}, {'dataset': 'cats-v-dogs'}])}\n"
    )
    opts = TuneOptions(space=str(space), name="mixed", storage=str(tmp_path), progress=False)
    run_experiment(opts, log=lambda _m: None)
    runs = results.load(opts.uri).runs.set_index("dataset")
    assert runs.loc["digits", "status"] == "COMPLETED"
    assert runs.loc["cats-v-dogs", "status"] == "UNAVAILABLE"
    assert "cat.<n>.jpg and dog.<n>.jpg" in runs.loc["cats-v-dogs", "error"]  # its files are not here


def test_every_code_family_runs_side_by_side_in_one_grid(tmp_path, local_ray):
    """The codes space, narrowed to digits at k=4, r=2: sixteen runs of three families (F's own parity
    architecture, three larger ones with both parity-model encoders, a parity model named explicitly, as
    the ViT cells' LeNet-5 one, and the projection code's slot-mlp), each parity model's cost beside it,
    one table, one report."""
    from parity_ray.analysis import code_comparison_table

    opts = TuneOptions(space="codes", name="codes", storage=str(tmp_path), progress=False, smoke_test=True,
                       overrides=["dataset=digits", "model=lenet5", "k=4", "r=2"])
    summary = run_experiment(opts, log=lambda _m: None)
    assert summary["status"] == {"COMPLETED": 16}, summary
    tables = results.load(opts.uri)
    runs = tables.runs.set_index("run_id")
    assert sorted(runs.code_family.value_counts().items()) == [("berrut", 4), ("learned", 3), ("parity-models", 9)]
    own = runs[(runs.code_family == "parity-models") & (runs.parity_arch == "lenet5")]
    assert set(runs.parity_arch) == {"lenet5", "lenet5-wide", "vit-wide", "resnet152", "slot-mlp"} and len(own) == 3
    assert (runs[runs.parity_arch == "resnet152"].parity_flops > 100 * own.parity_flops.max()).all()
    assert set(runs.worker) == {"base", "trained"} and set(runs.systematic) == {True, False}
    assert (runs.redundancy == 0.5).all()
    for column in ("degraded_accuracy_e1", "degraded_accuracy_e2", "all_accuracy_e1", "all_accuracy_e2"):
        assert runs[column].between(0, 1).all(), column
    assert runs.degraded_accuracy_e3.isna().all()  # e > r
    evaluate_only = runs[runs.epochs == 0]
    assert len(evaluate_only) == 2 and (evaluate_only.encoder == "berrut").all() and (evaluate_only.epochs_done == 0).all()
    # non-systematic codes rebuild every output: both measures agree
    ns = runs[~runs.systematic.astype(bool)]
    assert ((ns.degraded_accuracy_e1 - ns.all_accuracy_e1).abs() < 1e-9).all()
    preds = tables.predictions
    assert set(preds.erasures) == {1, 2} and preds.pattern.notna().all()
    assert set(preds.run_id) == set(runs.index)
    table = code_comparison_table(tables.runs)
    assert (table.best == "best").sum() >= 1 and table.code.nunique() == 15
