"""A run's folder: its record, its checkpoints (latest, best) and resuming from them.

Checkpoints carry the resolved config, seed and versions, and load with ``weights_only=True``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from .atomic import atomic_write_json, atomic_write_text
from .base import BaseModelInfo
from .config import TrainConfig
from .data import DataBundle
from .errors import UsageError
from .optimization import WeightAverage
from .pipeline import CodePipeline
from .provenance import library_versions
from .registry import spec_name
from .torch_files import atomic_torch_save


@dataclass
class RunState:
    """What a checkpoint must restore besides weights to continue exactly."""

    epoch: int = 0
    best_epoch: int = 0
    best_score: float = -1.0
    train_seconds: float = 0.0
    history: List[dict] = field(default_factory=list)  # one row per (epoch, split)


def existing_checkpoint(run_dir: Path, config: TrainConfig) -> Optional[Path]:
    """The latest checkpoint to resume from; a :class:`UsageError` if the folder holds another run."""
    if not run_dir.exists():
        return None
    record = run_dir / "config.json"
    if not record.exists():
        if any(run_dir.iterdir()):
            raise UsageError(f"output dir '{run_dir}' exists and holds no parity-ray run; choose another --out or --name")
        return None
    stored = TrainConfig.from_dict(json.loads(record.read_text())["config"])
    ours, theirs = _jsonable(config.identity()), _jsonable(stored.identity())
    changed = [f"{key}: {theirs.get(key)!r} -> {ours.get(key)!r}" for key in ours if ours.get(key) != theirs.get(key)]
    if changed:
        raise UsageError(
            f"output dir '{run_dir}' holds a different run ({'; '.join(changed[:4])}); choose another --out or --name"
        )
    latest = run_dir / "checkpoints" / "latest.pt"
    return latest if latest.exists() else None


def _jsonable(obj):
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def write_run_record(run_dir: Path, config: TrainConfig, data: DataBundle, base: BaseModelInfo, device) -> None:
    atomic_write_json(
        run_dir / "config.json",
        {
            "config": config.to_dict(),
            "seed": config.seed,
            "versions": library_versions(),
            "device": str(device),
            "data": {"source": data.source, "split": data.split, "normalization": data.normalization.as_dict()},
            "base_model": base.as_dict(),
        },
    )


def save_checkpoints(run_dir, config, state, code: CodePipeline, optimizer, scheduler, base_info, data, improved,
                     evaluated: Optional[Dict[str, Any]] = None, extra: Optional[Dict[str, Any]] = None) -> None:
    """best.pt (when improved), then latest.pt (the commit point of an epoch), then metrics.jsonl.

    ``evaluated``: the weights the epoch was scored with (the weight average, when there is one),
    which best.pt holds; latest.pt holds the live weights plus ``extra`` (the average's state).
    Everything in them is tensors and plain Python values, so they load with ``weights_only=True``.
    """
    common = {
        "config": config.to_dict(),
        "seed": config.seed,
        "versions": library_versions(),
        "base_model": base_info.as_dict(),
        "split": data.split,
        "normalization": data.normalization.as_dict(),
        "encoder": spec_name(config.encoder),
        "decoder": spec_name(config.decoder),
        "systematic": code.systematic,
        **code.state(),
    }
    folder = run_dir / "checkpoints"
    if improved:
        rows = [row for row in state.history if row["epoch"] == state.epoch]
        atomic_torch_save({**common, **(evaluated or {}), "epoch": state.epoch, "metrics": rows}, folder / "best.pt")
    atomic_torch_save(
        {
            **common,
            **(extra or {}),
            "epoch": state.epoch,
            "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
            "scheduler_state": scheduler.state_dict() if scheduler is not None else None,
            "state": {k: v for k, v in state.__dict__.items()},
        },
        folder / "latest.pt",
    )
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in state.history))


def load_checkpoint(path: Path, device="cpu") -> Dict[str, Any]:
    """A checkpoint of this platform; never runs code from the file (``weights_only=True``)."""
    from .torch_files import load_torch_safely

    return load_torch_safely(path, f"checkpoint {path}", map_location=device)


def restore(path: Path, data, code: CodePipeline, optimizer, scheduler, device, average: Optional[WeightAverage] = None) -> RunState:
    checkpoint = load_checkpoint(path, device)
    if checkpoint["split"]["val_indices_sha256"] != data.split["val_indices_sha256"]:
        raise UsageError(f"checkpoint {path} was trained on a different validation split; the dataset files changed")
    code.load_state(checkpoint)
    if average is not None:
        average.load_state(checkpoint)
    if optimizer is not None and checkpoint.get("optimizer_state") is not None:
        optimizer.load_state_dict(checkpoint["optimizer_state"])
    if scheduler is not None and checkpoint.get("scheduler_state") is not None:
        scheduler.load_state_dict(checkpoint["scheduler_state"])
    return RunState(**checkpoint["state"])
