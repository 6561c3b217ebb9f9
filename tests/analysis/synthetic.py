"""Synthetic experiment tables at paper scale, for the report's scale test (no training).

A grid of runs (k x r x encoder x loss x lr) over a real dataset's test split: real test
groups (``parity_ray.evaluation.fixed_groups``) and labels, made-up predictions, in schema v1
(``position`` + ``parity``) or v2 (``erasures`` + ``pattern`` + top-5 lists, the columns the
generalised codes add).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch

from parity_ray import results, storage
from parity_ray.config import TrainConfig
from parity_ray.evaluation import fixed_groups

GRID = {"k": [2, 3, 4], "r": [1, 2], "encoder": ["addition", "concatenation"], "loss": ["mse", "kl", "ce"],
        "lr": [0.001, 0.0003]}  # 72 cells


def _table(df: pd.DataFrame, folder: Path, name: str) -> None:
    storage.write_parquet(df, str(folder / "tables" / f"{name}.parquet"),
                          {results.VERSION_KEY: results.SCHEMA_VERSION, "parity_ray.table": name})


def write_grid(folder: Path, labels: np.ndarray, dataset: str = "mnist", data_root: Optional[str] = None,
               schema: int = 1, runs: Optional[int] = None, seed: int = 0, grid: Optional[dict] = None) -> Path:
    """Write runs / epochs / predictions / base_models tables of a synthetic grid into ``folder``.

    ``grid`` replaces :data:`GRID` (same keys); two grids written with different seeds hold the
    same run ids with different predictions, as two experiments of one config do.
    """
    rng = np.random.default_rng(seed)
    n = len(labels)
    classes = int(labels.max()) + 1
    grid = grid or GRID
    cells = [dict(zip(grid, values)) for values in itertools.product(*grid.values())][:runs]
    base_id = f"{dataset}-base-mlp-s0-synthetic"
    run_rows, epoch_rows, frames = [], [], []
    base_predictions = np.where(rng.random(n) < 0.97, labels, rng.integers(0, classes, n))
    for number, cell in enumerate(cells):
        config = TrainConfig(dataset=dataset, model="base-mlp", k=cell["k"], r=cell["r"], encoder=cell["encoder"],
                             decoder="subtraction", loss=cell["loss"], lr=cell["lr"], epochs=10, seed=0,
                             data_root=data_root)
        resolved = config.resolved().to_dict()
        run_id = f"{dataset}-base-mlp-k{cell['k']}-r{cell['r']}-{cell['encoder']}-{number:04d}"
        groups = fixed_groups(n, config.resolved(), "test", torch.device("cpu")).numpy()
        quality = 0.55 + 0.4 * rng.random()
        b, k = groups.shape
        r = cell["r"]
        if schema == 1:
            group_id = np.repeat(np.arange(b), r * k)
            parity = np.tile(np.repeat(np.arange(r), k), b)
            position = np.tile(np.arange(k), b * r)
            extra = {"parity": parity.astype("int16")}
        else:  # v2: every pattern of e <= r unavailable data workers (systematic), each unavailable slot rebuilt
            patterns = [c for e in range(1, r + 1) for c in itertools.combinations(range(k), e)]
            group_id, position, erasures, pattern = [], [], [], []
            for combo in patterns:
                for slot in combo:
                    group_id.append(np.arange(b))
                    position.append(np.full(b, slot))
                    erasures.append(np.full(b, len(combo)))
                    pattern.append(np.full(b, ",".join(map(str, combo)), dtype=object))
            group_id, position = np.concatenate(group_id), np.concatenate(position)
            extra = {"erasures": np.concatenate(erasures).astype("int16"), "pattern": np.concatenate(pattern)}
        test_index = groups[group_id, position]
        rows = len(test_index)
        base = base_predictions[test_index]
        decoded = np.where(rng.random(rows) < quality, base, rng.integers(0, classes, rows))
        frame = pd.DataFrame({
            "run_id": run_id, "group_id": group_id, "position": position.astype("int16"), **extra,
            "test_index": test_index, "label": labels[test_index], "base_prediction": base,
            "decoded_prediction": decoded,
            "base_top_probability": rng.uniform(0.5, 1.0, rows).astype("float32"),
            "decoded_top_probability": rng.uniform(0.2, 1.0, rows).astype("float32"),
            "kl_base_decoded": rng.lognormal(-1.0, 1.5, rows).astype("float32"),
        })
        if schema != 1:
            others = (base[:, None] + np.arange(1, 5)[None, :]) % classes
            frame["base_top5"] = list(np.concatenate([base[:, None], others], axis=1).astype("int16"))
            frame["decoded_top5"] = list(np.concatenate([decoded[:, None], (decoded[:, None] + np.arange(1, 5)) % classes],
                                                        axis=1).astype("int16"))
            probs = np.sort(rng.dirichlet(np.ones(5), rows).astype("float32"), axis=1)[:, ::-1]
            frame["base_top5_probabilities"] = list(probs)
            frame["decoded_top5_probabilities"] = list(probs)
        frames.append(frame)
        available = float((base_predictions == labels).mean())
        single = frame[frame.get("erasures", pd.Series(1, index=frame.index)) == 1]
        degraded = float((single["decoded_prediction"] == single["label"]).mean())
        row = {**{k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in resolved.items()},
               "experiment": folder.name, "run_id": run_id, "status": "COMPLETED", "error": None,
               "config_json": json.dumps(config.to_dict()), "space": "synthetic", "base_model_id": base_id,
               "available_accuracy": available, "degraded_accuracy": degraded,
               "reconstruction_accuracy": float((single["decoded_prediction"] == single["base_prediction"]).mean()),
               "degraded_top5": min(1.0, degraded + 0.1), "best_epoch": 10, "best_val_reconstruction": degraded,
               "final_degraded_accuracy": degraded, "final_reconstruction_accuracy": degraded, "epochs_done": 10,
               "train_seconds": float(rng.uniform(20, 200)), "wall_seconds": float(rng.uniform(30, 300)),
               "versions": json.dumps({"parity_ray": "0.1.0"}), "checkpoint_uri": None, "trial_id": f"t{number}",
               "schema_version": results.SCHEMA_VERSION}
        if schema != 1:
            row.update({"code_family": "parity-models", "systematic": True, "worker": "trained",
                        "redundancy": r / k, "degraded_accuracy_e1": degraded,
                        "degraded_accuracy_e2": degraded * 0.8 if r >= 2 else None, "degraded_accuracy_e3": None})
        run_rows.append(row)
        for epoch in range(1, 11):
            for split in ("train", "val", "test"):
                for metric, value in (("loss", 10 / epoch), ("reconstruction_top1", degraded * epoch / 10),
                                      ("overall_top1", degraded * epoch / 10), ("available_accuracy", available)):
                    epoch_rows.append({"run_id": run_id, "epoch": epoch, "split": split, "metric": metric,
                                       "value": value})
    base_models = pd.DataFrame([{"base_model_id": base_id, "dataset": dataset, "arch": "base-mlp", "seed": 0,
                                 "source": "trained", "val_accuracy": 0.97, "test_accuracy": 0.97,
                                 "train_accuracy": 0.99, "train_seconds": 30.0, "epochs": 12,
                                 "input_norm": json.dumps({"mean": [0.1307], "std": [0.3081]}), "weights_uri": ""}])
    _table(pd.DataFrame(run_rows), folder, "runs")
    _table(pd.DataFrame(epoch_rows), folder, "epochs")
    _table(pd.concat(frames, ignore_index=True), folder, "predictions")
    _table(base_models, folder, "base_models")
    return folder
