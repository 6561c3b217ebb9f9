"""What a serving replica needs from an experiment: the run's config and its model files.

``resolve_run(experiment, "best", dataset=..., model=..., k=...)`` picks a run from the
experiment's ``runs`` table; ``load_model(run, role)`` rebuilds the base model or a parity
model from the files in the experiment's storage, on any node.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional

from torch import nn

from . import storage
from .config import TrainConfig
from .errors import UsageError, choices_hint
from .models import create_model
from .registry import check_stored_config
from .torch_files import load_torch_safely


@dataclass
class ServedRun:
    """A trained parity run, as the serving layer sees it (plain data: it travels to replicas)."""

    experiment: str
    run_id: str
    config: Dict[str, Any]  # resolved TrainConfig
    base_weights_uri: str
    parity_checkpoint_uri: Optional[str]  # best.pt of the run; None when the run has no parity model
    input_norm: Dict[str, Any]
    degraded_accuracy: Optional[float]
    available_accuracy: Optional[float]

    @property
    def k(self) -> int:
        return int(self.config["k"])

    @property
    def r(self) -> int:
        return int(self.config["r"])

    def as_dict(self) -> dict:
        return asdict(self)


def _input_shape(dataset: str) -> str:
    from .data import get_dataset_spec

    try:
        return "x".join(map(str, get_dataset_spec(dataset).input_shape))
    except Exception:  # noqa: BLE001 - a dataset this install does not know: its name says enough
        return "?"


def _refuse_mixed_best(experiment: str, done, dataset: Optional[str]) -> None:
    """``best`` across several datasets ranks a toy against a real task and serves an input shape the
    reader did not ask for: refused in one line naming the datasets and the best run of each."""
    from .results import best_run

    datasets = sorted(done["dataset"].dropna().unique())
    if dataset is not None or len(datasets) < 2:
        return
    each = ", ".join(f"{name} ({_input_shape(name)}): {best_run(done[done.dataset == name])['run_id']}" for name in datasets)
    raise UsageError(f"--run best is ambiguous in experiment '{experiment}': its runs span {len(datasets)} datasets; "
                     f"pass --dataset (one of {', '.join(datasets)}) or a run id; the best of each: {each}")


def resolve_run(experiment: str, run: str = "best", *, dataset: Optional[str] = None, model: Optional[str] = None,
                k: Optional[int] = None) -> ServedRun:
    """A run by id, or ``best``: the completed run with the highest validation accuracy (filtered;
    ``results.rank_runs``), never chosen on test metrics."""
    from .results import best_run, load_experiment

    tables = load_experiment(experiment)
    runs = tables.runs
    done = runs[runs.status == "COMPLETED"]
    if run == "best":
        for column, value in (("dataset", dataset), ("model", model), ("k", k)):
            if value is not None:
                done = done[done[column] == value]
        if done.empty:
            raise UsageError(
                f"experiment '{experiment}' has no completed run matching "
                f"dataset={dataset} model={model} k={k}; completed runs: {', '.join(runs[runs.status == 'COMPLETED'].run_id) or 'none'}"
            )
        _refuse_mixed_best(experiment, done, dataset)
        row = best_run(done)
    else:
        match = runs[runs.run_id == run]
        if match.empty:
            raise UsageError(f"unknown run '{run}' in experiment '{experiment}'; {choices_hint(run, list(runs.run_id) + ['best'])}")
        row = match.iloc[0]
        if row.status != "COMPLETED":
            raise UsageError(f"run '{run}' has status {row.status}, not COMPLETED: {row.error}")
    base = tables.base_models[tables.base_models.base_model_id == row.base_model_id]
    if base.empty:
        raise UsageError(f"run '{row.run_id}' names base model '{row.base_model_id}', which the experiment does not hold")
    check_stored_config(row.config_json, f"run '{row.run_id}' of experiment '{experiment}'")  # before anything is imported
    config = TrainConfig.from_dict(json.loads(row.config_json)).resolved().to_dict()
    checkpoint = storage.join(row.checkpoint_uri, "checkpoints", "best.pt") if row.checkpoint_uri else None
    for key in (("run", str(row.run_id)), ("base", str(row.base_model_id))):
        if key in tables.refused:  # a stored path outside the experiment (results.load nulled it)
            raise UsageError(tables.refused[key])
    served = ServedRun(
        experiment=str(experiment),
        run_id=row.run_id,
        config=config,
        base_weights_uri=base.weights_uri.iloc[0],
        parity_checkpoint_uri=checkpoint,
        input_norm=json.loads(base.input_norm.iloc[0]),
        degraded_accuracy=_float(row.degraded_accuracy),
        available_accuracy=_float(row.available_accuracy),
    )
    check_files(served)
    return served


def check_files(run: ServedRun) -> None:
    """Read the run's weights files here, before any replica starts: a missing, unreadable or
    tampered file (one whose pickle names code to run) is one clear error, and nothing runs."""
    for uri in (run.base_weights_uri, run.parity_checkpoint_uri):
        if uri:
            read_torch_file(uri)


def read_torch_file(uri: str):
    """A weights file or checkpoint of the experiment's storage, loaded with ``weights_only=True``."""
    try:
        data = storage.read_bytes(uri)
    except (OSError, FileNotFoundError) as exc:
        raise UsageError(f"cannot read '{uri}': {exc}") from None
    return load_torch_safely(data, uri)


def _float(value) -> Optional[float]:
    return None if value is None or value != value else float(value)


def load_model(run: ServedRun, role: str, parity_index: int = 0, device: str = "cpu") -> nn.Module:
    """The base model (``role="base"``) or coded worker ``parity_index``'s model (``role="parity"``), in eval mode.

    A coded worker runs the trained parity model ``models.<parity_index>.`` of the run's best.pt, or
    the deployed model F itself when the run's ``parity_model`` is ``base``.
    """
    from .data import get_dataset_spec

    spec = get_dataset_spec(run.config["dataset"])
    if role == "base":
        model = create_model(run.config["model"], input_shape=spec.input_shape, num_classes=spec.num_classes)
        state = read_torch_file(run.base_weights_uri)
    elif role == "parity" and run.config.get("parity_model") == "base":
        # F as the coded worker (e.g. Berrut codes): the deployed model itself, frozen base weights
        return load_model(run, "base", device=device)
    elif role == "parity":
        if not run.parity_checkpoint_uri:
            raise UsageError(f"run '{run.run_id}' has no parity model checkpoint")
        model = create_model(run.config["parity_model"], input_shape=spec.input_shape, num_classes=spec.num_classes,
                             group_size=run.config["k"])
        checkpoint = read_torch_file(run.parity_checkpoint_uri)
        prefix = f"models.{parity_index}."
        state = {k[len(prefix):]: v for k, v in checkpoint["parity_state"].items() if k.startswith(prefix)}
    else:
        raise ValueError(f"role must be 'base' or 'parity', got {role!r}")
    model.load_state_dict(state)
    return model.to(device).eval()
