"""The report and the analysis tables on a regression (box localisation) experiment: a tiny real CUB run
(tiny files in the CUB_200_2011 layout), its real predictions and metrics, as experiment tables."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from parity_ray import results, storage
from parity_ray.config import TrainConfig
from parity_ray.trainer import train
from tests.conftest import write_cub


def _table(df: pd.DataFrame, folder, name: str) -> None:
    storage.write_parquet(df, str(folder / "tables" / f"{name}.parquet"),
                          {results.VERSION_KEY: results.SCHEMA_VERSION, "parity_ray.table": name})


@pytest.fixture(scope="module")
def regression_experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("cub-report")
    write_cub(root, n_images=12)
    folder = tmp_path_factory.mktemp("regression-experiment")
    config = TrainConfig.from_dict(dict(dataset="cub-localization", model="lenet5", k=2, val_size=2, base_epochs=1,
                                        epochs=2, batch_size=2, eval_batch_size=8, device="cpu", num_threads=1,
                                        download=False, data_root=str(root), out=str(folder / "runs"), name="boxes"))
    run = train(config, progress=False, log=lambda _m: None)
    summary, run_id = run.summary, "cub-localization-lenet5-k2-boxes"
    resolved = config.resolved().to_dict()
    row = {**{k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in resolved.items()},
           "experiment": "regression", "run_id": run_id, "status": "COMPLETED", "error": None,
           "config_json": json.dumps(config.to_dict()), "space": "test", "base_model_id": summary["base_model_id"],
           "task": "regression", "available_accuracy": summary["available_accuracy"],
           "degraded_accuracy": summary["degraded_accuracy"], "reconstruction_accuracy": summary["reconstruction_accuracy"],
           "degraded_top5": None, "degraded_mean_iou": summary["degraded_mean_iou"],
           "code_family": "parity-models", "systematic": True, "worker": "trained", "redundancy": 0.5,
           "degraded_accuracy_e1": summary["degraded_accuracy_e1"], "all_accuracy_e1": summary["all_accuracy_e1"],
           "best_epoch": summary["best_epoch"], "best_val_reconstruction": summary["best_val_reconstruction"],
           "final_degraded_accuracy": summary["final_degraded_accuracy"],
           "final_reconstruction_accuracy": summary["final_reconstruction_accuracy"], "epochs_done": summary["epochs"],
           "train_seconds": summary["train_seconds"], "wall_seconds": summary["train_seconds"],
           "versions": json.dumps({"parity_ray": "0.1.0"}), "checkpoint_uri": None, "trial_id": "t0",
           "schema_version": results.SCHEMA_VERSION}
    epochs = [{"run_id": run_id, "epoch": r["epoch"], "split": r["split"], "metric": m, "value": float(v)}
              for r in run.history for m, v in r.items() if m not in ("epoch", "split")]
    predictions = pd.read_parquet(run.run_dir / "predictions.parquet").assign(run_id=run_id)
    base_models = pd.DataFrame([{"base_model_id": summary["base_model_id"], "dataset": "cub-localization", "arch": "lenet5",
                                 "seed": 0, "source": "trained", "val_accuracy": 0.0, "test_accuracy": 0.0,
                                 "train_accuracy": 0.0, "train_seconds": 1.0, "epochs": 1,
                                 "input_norm": json.dumps({"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}),
                                 "weights_uri": ""}])
    _table(pd.DataFrame([row]), folder, "runs")
    _table(pd.DataFrame(epochs), folder, "epochs")
    _table(predictions, folder, "predictions")
    _table(base_models, folder, "base_models")
    return folder, str(root)


def test_the_report_of_a_regression_experiment_builds_without_class_columns(regression_experiment):
    from parity_ray.analysis.report import build_report

    folder, data_root = regression_experiment
    summary = build_report(str(folder), data_root=data_root)
    page = (folder / "report" / "index.html").read_text()
    assert summary["runs"] == 1
    assert "cub-localization" in page
    assert "IoU" in page  # boxes are scored by IoU, not by class


def test_analysis_tables_score_boxes_by_iou(regression_experiment):
    from parity_ray import analysis

    folder, _ = regression_experiment
    tables = results.load(str(folder))
    assert {"decoded_box", "iou_decoded_true"} <= set(tables.predictions.columns)
    agreement = analysis.tables.agreement(tables) if hasattr(analysis.tables, "agreement") else None
    assert agreement is None or len(agreement) == 1
