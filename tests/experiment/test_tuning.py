"""Tune schedulers, search algorithms and tracking callbacks, ranked on validation metrics only."""

from __future__ import annotations

import json
import textwrap

import pytest

from parity_ray import results
from parity_ray.errors import UsageError
from parity_ray.tune.experiment import TuneOptions, run_experiment
from parity_ray.tune.spaces import expand
from parity_ray.tune.tuning import SCHEDULERS, SEARCH_ALGS, build, list_callbacks, list_schedulers, list_search_algs

ASHA_SPACE = """
from ray import tune
defaults = {"dataset": "digits", "model": "base-mlp", "k": 2, "encoder": "addition", "base_epochs": 10,
            "epochs": 6, "device": "cpu"}
# two good learning rates first, then two hopeless ones: the good trials set each rung's cutoff and
# ASHA must stop the hopeless ones there (had the hopeless ones come first, tied at chance, none is stopped)
param_space = {"lr": tune.grid_search([3e-3, 2e-3, 3e-7, 1e-7])}
scheduler = {"cls": "asha", "max_t": 6, "grace_period": 1, "reduction_factor": 2}
"""


def write_space(tmp_path, text: str, name: str = "space.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.mark.slow
def test_asha_stops_weak_trials_on_validation_and_records_them_and_mlflow_sees_every_trial(tmp_path, local_ray,
                                                                                          monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the local file store behind this switch
    tracking = f"file:{tmp_path / 'mlruns'}"
    callback = json.dumps({"cls": "mlflow", "tracking_uri": tracking, "experiment_name": "asha", "save_artifact": False})
    opts = TuneOptions(space=write_space(tmp_path, ASHA_SPACE), name="asha", storage=str(tmp_path / "results"),
                       progress=False, callbacks=[callback])
    summary = run_experiment(opts, log=lambda _m: None)
    runs = results.load(opts.uri).runs
    tables = results.load(opts.uri)
    assert len(runs) == 4 and set(runs.status) <= {"COMPLETED", "EARLY_STOPPED"}
    stopped = runs[runs.status == "EARLY_STOPPED"]
    assert len(stopped) >= 1 and (stopped.epochs_done < 6).all()
    assert stopped.error.str.contains("asha scheduler").all()
    for _, run in stopped.iterrows():  # a stopped trial keeps its rows: epochs, and its best epoch's predictions
        assert len(tables.predictions[tables.predictions.run_id == run.run_id]) > 0
        assert set(tables.epochs[tables.epochs.run_id == run.run_id].epoch) == set(range(1, run.epochs_done + 1))
        assert run.best_epoch <= run.epochs_done
    # "best" is the completed run with the highest validation accuracy, not the highest test accuracy
    done = runs[runs.status == "COMPLETED"]
    best = done.sort_values(["val_degraded_accuracy", "run_id"], ascending=[False, True]).iloc[0]
    assert summary["best_run"] == best.run_id
    assert summary["best_all_accuracy_e0"] == best.all_accuracy_e0 and summary["best_available_accuracy"] == best.available_accuracy
    assert runs.all_accuracy_e0.notna().all() and runs.majority_accuracy.between(0.05, 0.5).all()
    assert results.best_run(runs).run_id == best.run_id
    assert runs.val_degraded_accuracy.notna().all()
    # the tracking callback saw every trial, with the validation metric Tune ranked by
    mlflow.set_tracking_uri(tracking)
    found = mlflow.search_runs(experiment_names=["asha"])
    assert len(found) == 4
    assert "metrics.val_degraded_accuracy" in found.columns and found["metrics.val_degraded_accuracy"].notna().all()
    # ... in the experiment's language: runs named by run id, params by config key, no config value as a metric
    assert set(found["tags.mlflow.runName"]) == set(runs.run_id)
    assert {"params.k", "params.r", "params.dataset", "params.encoder"} <= set(found.columns)
    assert not [c for c in found.columns if c.startswith("params.trial") or c.startswith("metrics.config")]
    assert not {"metrics.k", "metrics.r", "metrics.epochs", "metrics.lr"} & set(found.columns)


def test_tune_metric_must_be_a_validation_metric(tmp_path):
    space = write_space(tmp_path, ASHA_SPACE + "\nmetric = 'test_overall_top1'\n")
    with pytest.raises(UsageError, match="validation metrics only"):
        expand(space)


def test_set_changes_or_swaps_the_scheduler_and_refuses_unknown_settings(tmp_path):
    space = write_space(tmp_path, ASHA_SPACE)
    assert expand(space, ["scheduler.grace_period=2"]).scheduler["grace_period"] == 2
    assert expand(space, ["scheduler=median"]).scheduler == {"cls": "median"}
    assert expand(space, ["scheduler=none"]).scheduler is None
    with pytest.raises(UsageError, match="does not take"):
        build(SCHEDULERS, expand(space, ["scheduler.no_such_setting=1"]).scheduler)
    with pytest.raises(UsageError, match="unknown trial scheduler"):
        build(SCHEDULERS, expand(space, ["scheduler=ashaa"]).scheduler)
    with pytest.raises(UsageError, match="must not set 'metric'"):
        build(SCHEDULERS, expand(space, ["scheduler.metric=test_overall_top1"]).scheduler)


def test_a_search_algorithm_needs_a_single_cell(tmp_path):
    space = write_space(tmp_path, ASHA_SPACE)
    with pytest.raises(UsageError, match="search_alg and 4 grid cells"):
        expand(space, ["search_alg=optuna"])
    one = expand(space, ["search_alg=optuna", "lr=0.002"])
    assert one.search_alg == {"cls": "optuna"} and len(one.cells) == 1


REQUIRED_SETTINGS = {"pbt": {"hyperparam_mutations": {"lr": [1e-4, 1e-3]}}}


@pytest.mark.parametrize("name", list_schedulers())
def test_every_registered_scheduler_builds(name):
    assert build(SCHEDULERS, {"cls": name, **REQUIRED_SETTINGS.get(name, {})}) is not None


def test_a_scheduler_missing_a_required_setting_is_refused_in_one_line():
    with pytest.raises(UsageError, match="refused its settings.*hyperparam_mutations"):
        build(SCHEDULERS, {"cls": "pbt"})


@pytest.mark.parametrize("name", list_search_algs())
def test_every_registered_search_algorithm_builds_or_names_its_missing_package(name):
    try:
        assert build(SEARCH_ALGS, {"cls": name}) is not None
    except UsageError as exc:
        assert "not installed" in str(exc)


def test_the_registries_name_the_tracking_integrations():
    assert {"mlflow", "wandb", "tensorboard"} <= set(list_callbacks())
