"""The ``mlflow`` Tune callback: Ray's ``MLflowLoggerCallback``, speaking the experiment's language.

Ray's callback names an MLflow run by Tune's trial name, logs the nested param space as params
(``trial/config/k``) and every number in a result as a metric, config values included. Here an
MLflow run is named by its ``run_id`` (the id of the runs table), its params are the trial's config
keys by their names (``k``, ``r``, ``dataset``; sampled keys too), and its metrics are only the
numbers a trial reports as measurements (never a config value, never Tune's bookkeeping).
"""

from __future__ import annotations

import json
import numbers
from typing import Any, Dict

from ray.air.integrations.mlflow import MLflowLoggerCallback

from .tuning import trial_run_id

# Numbers a result carries that are bookkeeping, not measurements.
NOT_METRICS = frozenset({"epoch", "epochs", "training_iteration", "timestamp", "time_this_iter_s", "time_total_s",
                         "time_since_restore", "iterations_since_restore", "pid", "done", "trial_id", "date",
                         "hostname", "node_ip", "node_id", "run_id", "experiment_tag", "checkpoint_dir_name",
                         "should_checkpoint"})


def trial_params(config: Dict[str, Any]) -> Dict[str, Any]:
    """A trial's params by their config names: the run's TrainConfig keys, then its sampled keys."""
    params = dict(config.get("trial", {}).get("config", {}))
    params.update({key: value for key, value in config.items() if key != "trial"})
    return {key: json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value
            for key, value in params.items() if value is not None}


def trial_metrics(result: Dict[str, Any]) -> Dict[str, float]:
    """The measurements of a result: its top-level numbers, less config values and bookkeeping."""
    return {key: float(value) for key, value in result.items()
            if key not in NOT_METRICS and key != "config" and isinstance(value, numbers.Number)
            and not isinstance(value, bool)}


class MLflowCallback(MLflowLoggerCallback):
    """``MLflowLoggerCallback`` with runs named by run id, params by config key, measurements as metrics."""

    def log_trial_start(self, trial) -> None:
        if trial not in self._trial_runs:
            run_id = trial_run_id(trial.config)
            tags = {**(self.tags or {}), "trial_name": str(trial), "run_id": run_id}
            self._trial_runs[trial] = self.mlflow_util.start_run(tags=tags, run_name=run_id).info.run_id
        if not self.log_params_on_trial_end:
            self.mlflow_util.log_params(run_id=self._trial_runs[trial], params_to_log=trial_params(trial.config))

    def log_trial_result(self, iteration: int, trial, result: Dict[str, Any]) -> None:
        step = result.get("epoch") or result.get("training_iteration") or iteration
        self.mlflow_util.log_metrics(run_id=self._trial_runs[trial], metrics_to_log=trial_metrics(result), step=step)

    def log_trial_end(self, trial, failed: bool = False) -> None:
        run_id = self._trial_runs[trial]
        if self.should_save_artifact:
            self.mlflow_util.save_artifacts(run_id=run_id, dir=trial.local_path)
        if self.log_params_on_trial_end:
            self.mlflow_util.log_params(run_id=run_id, params_to_log=trial_params(trial.config))
        self.mlflow_util.end_run(run_id=run_id, status="FAILED" if failed else "FINISHED")
