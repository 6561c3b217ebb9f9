"""The frozen base model F: imported from a state_dict, or trained here once and cached.

A trained base model is keyed by everything that determines it (dataset, architecture,
seed, split, preprocessing, recipe), stored with its metadata, and reused by every
parity run. A file lock makes concurrent runs that need the same model train it once;
files are written atomically so nobody reads a half-written model.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from .config import TrainConfig
from .data import DataBundle
from .models import create_model, load_weights
from .registry import parse_spec, spec_name
from .tasks import get_task
from .atomic import atomic_write_json, file_lock
from .logs import stderr_log
from .machine import cache_dir
from .provenance import library_versions, sha256_file, stable_hash
from .torch_files import atomic_torch_save, load_torch_safely

BASE_RECIPE = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "batch_size": 128, "version": 1}


@dataclass
class BaseModelInfo:
    """Lineage of a base model, recorded with every parity run that uses it."""

    id: str
    dataset: str
    arch: str
    seed: int
    source: str  # "trained" (here) or "imported"
    weights: str  # path of the state_dict
    input_norm: dict
    val_accuracy: float
    test_accuracy: float
    train_accuracy: float
    train_seconds: float = 0.0
    epochs: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def build_base_model(config: TrainConfig, data: DataBundle) -> nn.Module:
    return create_model(config.model, input_shape=data.spec.input_shape, num_classes=data.spec.num_classes)


@torch.no_grad()
def compute_outputs(model: nn.Module, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """The model's outputs for every row of ``x``, in large eval-mode batches."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]).float()


def accuracy(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    return get_task("classification").accuracy(outputs, labels)


def task_accuracy(outputs: torch.Tensor, labels: torch.Tensor, task: str = "classification") -> float:
    """F's accuracy as ``task`` scores it (classification: top-1; regression: share of IoU >= 0.75)."""
    return get_task(task).accuracy(outputs, labels)


# --------------------------------------------------------------------------- base outputs on disk

BASE_OUTPUTS_VERSION = 1


def majority_accuracy(labels: torch.Tensor, task: str = "classification") -> Optional[float]:
    """The accuracy of always giving one answer (the most frequent class): the base rate a rebuilt
    answer must beat. None where the task has no such bar (boxes)."""
    return get_task(task).base_rate(labels)


def weights_sha256(model: nn.Module) -> str:
    """A hash of a model's state (names, shapes, dtypes and bytes of every tensor)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _inputs_fingerprint(x: torch.Tensor) -> str:
    """A cheap fingerprint of an input tensor: its shape and a strided sample of its values."""
    flat = x.detach().reshape(-1)
    sample = flat[:: max(1, flat.numel() // 65_536)].float().cpu().contiguous()
    return hashlib.sha256(f"{tuple(x.shape)}".encode() + sample.numpy().tobytes()).hexdigest()[:16]


def base_outputs_key(model: nn.Module, config: TrainConfig, data: DataBundle, device: torch.device,
                     extra: Optional[dict] = None) -> dict:
    """What determines the cached outputs: the base weights, dataset, split, normalisation, inputs, device kind."""
    return {
        "version": BASE_OUTPUTS_VERSION,
        "weights_sha256": weights_sha256(model),
        "model": parse_spec(config.model),
        "dataset": config.dataset,
        "split": data.split,
        "normalization": data.normalization.as_dict(),
        "inputs": {s: _inputs_fingerprint(data.split_tensors(s)[0]) for s in ("train", "val", "test")},
        "device": torch.device(device).type,
        **(extra or {}),
    }


def base_outputs_cache_path(key: dict) -> Path:
    """``$PARITY_RAY_CACHE/base_outputs/<dataset>/<hash>.pt``."""
    return cache_dir("base_outputs", str(key["dataset"])) / f"{stable_hash(key, 24)}.pt"


def cached_base_outputs(
    model: nn.Module,
    config: TrainConfig,
    data: DataBundle,
    device: torch.device,
    splits: Sequence[str] = ("train", "val", "test"),
    log: Callable[[str], None] = print,
) -> Tuple[Dict[str, torch.Tensor], bool]:
    """``({split: outputs}, from_cache)``: F's outputs on every split, read from the on-disk cache when present.

    The entry is keyed by :func:`base_outputs_key`, so other weights, another split or another
    normalisation never see it. A damaged entry is recomputed; a cache that cannot be written
    (a full disk) only costs the next run its start-up time.
    """
    key = base_outputs_key(model, config, data, device)
    path = base_outputs_cache_path(key)
    if path.is_file():
        try:
            stored = torch.load(path, map_location=device, weights_only=True)
            if stored.get("key") == json.loads(json.dumps(key, default=str)) and all(s in stored["outputs"] for s in splits):
                outputs = {s: stored["outputs"][s] for s in splits}
                if all(len(outputs[s]) == len(data.split_tensors(s)[1]) for s in splits):
                    return outputs, True
        except Exception:  # a truncated or foreign file: recompute below
            pass
    outputs = {s: compute_outputs(model, data.split_tensors(s)[0], config.eval_batch_size) for s in splits}
    try:
        atomic_torch_save({"key": json.loads(json.dumps(key, default=str)),
                           "outputs": {s: v.detach().cpu() for s, v in outputs.items()}}, path)
    except OSError as exc:
        log(f"base outputs not cached ({exc})")
    return outputs, False


def prepare_base_model(
    config: TrainConfig, data: DataBundle, device: torch.device, log: Callable[[str], None] = stderr_log
) -> Tuple[nn.Module, BaseModelInfo]:
    """Return the frozen base model (eval mode, no grad) and its lineage."""
    model = build_base_model(config, data).to(device)
    if config.base_weights:
        model.cpu()
        load_weights(model, config.base_weights, spec_name(config.model))
        model.to(device)
        info = _describe(model, config, data, source="imported", weights=str(Path(config.base_weights).resolve()))
        info.id = base_model_id(config, data)
    else:
        model, info = _cached_or_trained(model, config, data, device, log)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, info


def base_model_key(config: TrainConfig, data: DataBundle) -> dict:
    return {
        "dataset": config.dataset,
        "model": parse_spec(config.model),
        "seed": config.seed,
        "split": data.split,
        "input_norm": data.normalization.as_dict(),
        "epochs": config.base_epochs,
        "recipe": BASE_RECIPE,
        # a capped (smoke-test) base model never stands in for a full one; uncapped keys are unchanged
        **({"max_train_batches": config.max_train_batches} if config.max_train_batches else {}),
    }


def base_model_id(config: TrainConfig, data: DataBundle) -> str:
    """The id under which a base model trained here is cached; imported ones use their file hash."""
    if config.base_weights:
        return f"imported-{sha256_file(config.base_weights)[:12]}"
    arch = spec_name(config.model).rsplit(".", 1)[-1]
    return f"{config.dataset}-{arch}-s{config.seed}-{stable_hash(base_model_key(config, data))}"


def base_cache_root(config: TrainConfig) -> Path:
    return Path(config.base_cache) if config.base_cache else cache_dir("base_models")


def _cached_or_trained(model, config, data, device, log):
    key = base_model_key(config, data)
    model_id = base_model_id(config, data)
    root = base_cache_root(config)
    folder = root / model_id
    weights, meta = folder / "model.pt", folder / "meta.json"
    with file_lock(root / f".{model_id}.lock"):
        if weights.exists() and meta.exists():
            model.load_state_dict(load_torch_safely(weights, str(weights), map_location=device))
            info = BaseModelInfo(**json.loads(meta.read_text())["info"])
            return model, info
        log(f"training base model {model_id} ({config.base_epochs} epochs) ...")
        started = time.perf_counter()
        train_base_model(model, data, epochs=config.base_epochs, seed=config.seed, eval_batch_size=config.eval_batch_size,
                         max_batches=config.max_train_batches)
        info = _describe(model, config, data, source="trained", weights=str(weights))
        info.id, info.train_seconds, info.epochs = model_id, time.perf_counter() - started, config.base_epochs
        atomic_torch_save({k: v.cpu() for k, v in model.state_dict().items()}, weights)
        atomic_write_json(meta, {"info": info.as_dict(), "key": key, "versions": library_versions()})
        log(f"base model {model_id}: test accuracy {info.test_accuracy:.4f} ({info.train_seconds:.1f} s)")
        return model, info


def _describe(model, config, data, source, weights) -> BaseModelInfo:
    # A capped (smoke-test) model is described on as many examples as it trained on per epoch.
    cap = slice(None) if not config.max_train_batches else slice(0, config.max_train_batches * BASE_RECIPE["batch_size"])
    acc = {
        split: task_accuracy(compute_outputs(model, x[cap], config.eval_batch_size), y[cap], data.spec.task)
        for split, (x, y) in ((s, data.split_tensors(s)) for s in ("train", "val", "test"))
    }
    return BaseModelInfo(
        id="",
        dataset=config.dataset,
        arch=spec_name(config.model),
        seed=config.seed,
        source=source,
        weights=weights,
        input_norm=data.normalization.as_dict(),
        val_accuracy=acc["val"],
        test_accuracy=acc["test"],
        train_accuracy=acc["train"],
    )


def train_base_model(model: nn.Module, data: DataBundle, epochs: int, seed: int, eval_batch_size: int = 8192,
                     max_batches: Optional[int] = None) -> None:
    """Plain supervised training; keeps the weights of the best validation epoch. ``max_batches``
    (``max_train_batches``, as in smoke tests) caps the batches of an epoch and the validation set
    to as many batches' worth of examples.

    Classification: cross-entropy, selected on validation accuracy. Regression (boxes): MSE with
    the artifact's weight decay 1e-5, selected on the validation share of IoU >= 0.75.
    """
    task = get_task(data.spec.task)
    torch.manual_seed(seed)
    weight_decay = BASE_RECIPE["weight_decay"] if task.base_weight_decay is None else task.base_weight_decay
    optimizer = torch.optim.Adam(model.parameters(), lr=BASE_RECIPE["lr"], weight_decay=weight_decay)
    task.prepare_output_layer(model, data.train_y)
    generator = torch.Generator().manual_seed(seed)
    batch = BASE_RECIPE["batch_size"]
    best_acc, best_state = -1.0, None
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(data.train_y), generator=generator).to(data.train_x.device)
        for i in range(0, len(order) if max_batches is None else min(len(order), max_batches * batch), batch):
            idx = order[i : i + batch]
            loss = task.base_loss(model(data.train_x[idx]), data.train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        val = slice(None) if max_batches is None else slice(0, max_batches * batch)
        val_acc = task.accuracy(compute_outputs(model, data.val_x[val], eval_batch_size), data.val_y[val])
        if val_acc > best_acc:
            best_acc, best_state = val_acc, {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
