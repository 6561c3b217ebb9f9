"""Train one parity model run: data -> frozen base -> encoder -> parity model -> decoder -> metrics -> report.

The base model's outputs are computed once per split and cached, so an epoch only
runs the parity model. Each training epoch draws fresh random k-groups (seeded by
seed and epoch, so a resumed run sees the same groups); validation and test groups
are fixed. Checkpoints (latest, best) carry the resolved config, seed and versions.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
from torch import nn

from .base import BaseModelInfo, accuracy, compute_outputs, prepare_base_model
from .coders import create_decoder, create_encoder
from .config import TrainConfig
from .data import DataBundle, load_data
from .errors import UsageError
from .losses import LossInputs, create_loss
from .metrics import MetricAccumulator
from .models import create_model
from .registry import spec_name
from .utils import atomic_torch_save, atomic_write_json, atomic_write_text, library_versions, resolve_device, stderr_log

SPLITS = ("train", "val", "test")
EVAL_SPLITS = ("val", "test")
Log = Callable[[str], None]



class StopTraining(Exception):
    """Raised by an ``on_epoch`` callback to end a run early (after that epoch is saved)."""


@dataclass
class EpochReport:
    """What ``on_epoch`` callbacks see after each epoch has been checkpointed."""

    epoch: int
    metrics: Dict[str, Dict[str, float]]  # split -> metric -> value
    train_seconds: float  # cumulative, this process and earlier ones
    is_best: bool
    run_dir: Path
    checkpoint_dir: Path


@dataclass
class RunResult:
    run_dir: Path
    summary: dict
    history: List[dict]


@dataclass
class RunState:
    """What a checkpoint must restore besides weights to continue exactly."""

    epoch: int = 0
    best_epoch: int = 0
    best_score: float = -1.0
    train_seconds: float = 0.0
    history: List[dict] = field(default_factory=list)  # one row per (epoch, split)


class ParityModels(nn.Module):
    """The r parity models, one per parity query: (B, r, C, H, W) -> (B, r, n)."""

    def __init__(self, build: Callable[[], nn.Module], r: int):
        super().__init__()
        self.models = nn.ModuleList(build() for _ in range(r))

    def forward(self, parity_queries: torch.Tensor) -> torch.Tensor:
        return torch.stack([model(parity_queries[:, j]) for j, model in enumerate(self.models)], dim=1)


# --------------------------------------------------------------------------- the run


def train(
    config: TrainConfig,
    *,
    progress: bool = True,
    log: Log = stderr_log,
    on_epoch: Optional[Callable[[EpochReport], None]] = None,
) -> RunResult:
    """Train (or resume) the run described by ``config``; return its summary.

    ``on_epoch`` is called after every saved epoch (Tune reports from it); it may
    raise :class:`StopTraining` to end the run early.
    """
    config = config.validate().resolved()
    run_dir = Path(config.out) / config.run_name()
    checkpoint = existing_checkpoint(run_dir, config)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    device = resolve_device(config.device)
    started = time.perf_counter()

    # Data, then the frozen base model whose outputs every epoch reuses.
    data = load_data(
        config.dataset,
        data_root=config.data_root,
        download=config.download,
        val_size=config.val_size,
        split_seed=config.seed,
        input_norm=config.input_norm,
        device=device,
    )
    base_model, base_info = prepare_base_model(config, data, device, log)
    base_outputs = {s: compute_outputs(base_model, data.split_tensors(s)[0], config.eval_batch_size) for s in SPLITS}
    available = {s: accuracy(base_outputs[s], data.split_tensors(s)[1]) for s in SPLITS}
    startup_seconds = time.perf_counter() - started

    # The code: encoder -> r parity models -> decoder, and what the parity models learn.
    torch.manual_seed(config.seed)
    spec = data.spec
    encoder = create_encoder(config.encoder, k=config.k, r=config.r, input_shape=spec.input_shape).to(device)
    decoder = create_decoder(config.decoder, k=config.k, r=config.r).to(device)
    parity = ParityModels(
        lambda: create_model(config.parity_model, input_shape=spec.input_shape, num_classes=spec.num_classes), config.r
    ).to(device)
    loss_fn = create_loss(config.loss)
    optimizer = make_optimizer(config, parity)
    scheduler = make_scheduler(config, optimizer)

    state = RunState()
    if checkpoint is not None:
        state = restore(checkpoint, data, parity, optimizer, scheduler, device)
        log(f"resuming {run_dir} after epoch {state.epoch}")
    write_run_record(run_dir, config, data, base_info, device)

    eval_groups = {s: fixed_groups(len(data.split_tensors(s)[1]), config, s, device) for s in EVAL_SPLITS}
    if config.max_eval_groups:
        eval_groups = {s: g[: config.max_eval_groups] for s, g in eval_groups.items()}

    for epoch in range(state.epoch + 1, config.epochs + 1):
        epoch_started = time.perf_counter()
        results = {"train": train_one_epoch(config, epoch, data, base_outputs, encoder, parity, decoder, loss_fn, optimizer, progress)}
        if scheduler is not None:
            scheduler.step()
        state.train_seconds += time.perf_counter() - epoch_started
        for split in EVAL_SPLITS:
            x, y = data.split_tensors(split)
            results[split] = evaluate(eval_groups[split], x, y, base_outputs[split], encoder, parity, decoder, loss_fn, config)
        for split, metrics in results.items():
            state.history.append({"epoch": epoch, "split": split, **metrics, "available_accuracy": available[split]})
        state.epoch = epoch
        improved = results["val"]["reconstruction_top1"] > state.best_score
        if improved:
            state.best_epoch, state.best_score = epoch, results["val"]["reconstruction_top1"]
        save_checkpoints(run_dir, config, state, parity, optimizer, scheduler, base_info, data, improved)
        if epoch == config.epochs:
            write_predictions(run_dir, parity, eval_groups["test"], data, base_outputs["test"], encoder, decoder, config)
        if should_log(epoch, config.epochs, time.perf_counter() - epoch_started):
            log(
                f"epoch {epoch}/{config.epochs}  loss {results['train']['loss']:.4f}  "
                f"val recon {results['val']['reconstruction_top1']:.4f}  "
                f"degraded {results['test']['overall_top1']:.4f}  ({time.perf_counter() - epoch_started:.1f} s)"
            )
        if on_epoch is not None:
            report = EpochReport(epoch, results, state.train_seconds, improved, run_dir, run_dir / "checkpoints")
            try:
                on_epoch(report)
            except StopTraining:
                break

    summary = summarize(config, run_dir, state, base_info, available, startup_seconds, device)
    atomic_write_json(run_dir / "summary.json", summary)
    return RunResult(run_dir=run_dir, summary=summary, history=state.history)


def should_log(epoch: int, epochs: int, seconds: float) -> bool:
    """Slow epochs always; fast ones about 20 times a run, so long runs stay readable."""
    return seconds >= 2.0 or epoch == epochs or epoch % max(1, epochs // 20) == 0


# --------------------------------------------------------------------------- one epoch


def random_groups(n: int, k: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """Fresh k-groups for one training epoch: (n // k, k) indices, seeded by (seed, epoch)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=generator)
    return order[: (n // k) * k].view(-1, k).to(device)


def fixed_groups(n: int, config: TrainConfig, split: str, device: torch.device) -> torch.Tensor:
    """The same k-groups every epoch; the last group wraps around so every image is scored."""
    generator = torch.Generator().manual_seed(config.seed * 7919 + (1 if split == "val" else 2))
    order = torch.randperm(n, generator=generator)
    pad = (-n) % config.k
    return torch.cat([order, order[:pad]]).view(-1, config.k).to(device)


def forward_groups(groups, x, base_outputs, labels, encoder, parity, decoder, loss_fn):
    """Encode the groups' queries, run the parity models, decode every single erasure, score."""
    queries = x[groups]  # (B, k, C, H, W)
    outputs = base_outputs[groups]  # (B, k, n), the base model's cached answers
    parity_outputs = parity(encoder(queries))  # (B, r, n)
    batch = LossInputs(
        parity_outputs=parity_outputs,
        parity_targets=decoder.target(outputs),
        decoded=decoder.decode_each_single(outputs, parity_outputs),
        base_outputs=outputs,
        labels=labels[groups],
    )
    return loss_fn(batch), batch


def train_one_epoch(config, epoch, data, base_outputs, encoder, parity, decoder, loss_fn, optimizer, progress):
    parity.train()
    groups = random_groups(len(data.train_y), config.k, config.seed, epoch, data.train_x.device)
    batches = groups.split(config.batch_size)
    if config.max_train_batches:
        batches = batches[: config.max_train_batches]
    metrics = MetricAccumulator()
    for idx in _progress(batches, epoch, config.epochs, progress):
        loss, batch = forward_groups(idx, data.train_x, base_outputs["train"], data.train_y, encoder, parity, decoder, loss_fn)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        metrics.add(loss, batch.decoded.detach(), batch.base_outputs, batch.labels)
    return metrics.result()


@torch.no_grad()
def evaluate(groups, x, labels, base_outputs, encoder, parity, decoder, loss_fn, config) -> Dict[str, float]:
    parity.eval()
    metrics = MetricAccumulator()
    for idx in groups.split(max(1, config.eval_batch_size // config.k)):
        loss, batch = forward_groups(idx, x, base_outputs, labels, encoder, parity, decoder, loss_fn)
        metrics.add(loss, batch.decoded, batch.base_outputs, batch.labels)
    return metrics.result()


def _progress(batches, epoch, epochs, enabled):
    if not enabled:
        return batches
    from tqdm.auto import tqdm

    return tqdm(batches, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False, file=sys.stderr)


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        # The fused kernel is ~1.6x faster per step for the small parity models of the paper.
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def make_scheduler(config: TrainConfig, optimizer):
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step, gamma=config.lr_gamma)
    return None


# --------------------------------------------------------------------------- run folder


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


def save_checkpoints(run_dir, config, state, parity, optimizer, scheduler, base_info, data, improved) -> None:
    """best.pt (when improved), then latest.pt (the commit point of an epoch), then metrics.jsonl."""
    common = {
        "config": config.to_dict(),
        "seed": config.seed,
        "versions": library_versions(),
        "base_model": base_info.as_dict(),
        "split": data.split,
        "normalization": data.normalization.as_dict(),
        "encoder": spec_name(config.encoder),
        "decoder": spec_name(config.decoder),
    }
    parity_state = {k: v.detach().cpu() for k, v in parity.state_dict().items()}
    folder = run_dir / "checkpoints"
    if improved:
        rows = [row for row in state.history if row["epoch"] == state.epoch]
        atomic_torch_save({**common, "epoch": state.epoch, "parity_state": parity_state, "metrics": rows}, folder / "best.pt")
    atomic_torch_save(
        {
            **common,
            "epoch": state.epoch,
            "parity_state": parity_state,
            "optimizer_state": optimizer.state_dict(),
            "scheduler_state": scheduler.state_dict() if scheduler is not None else None,
            "state": {k: v for k, v in state.__dict__.items()},
        },
        folder / "latest.pt",
    )
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in state.history))


@torch.no_grad()
def predictions_frame(parity, groups, data: DataBundle, base_outputs, encoder, decoder, config):
    """Per test group x erasure position x parity: labels, predictions, confidences, KL(base || decoded).

    This is what lets an analyst ask *which* predictions break under erasure.
    """
    import pandas as pd

    parity.eval()
    frames = []
    step = max(1, config.eval_batch_size // config.k)
    for offset in range(0, len(groups), step):
        chunk = groups[offset : offset + step]
        outputs = base_outputs[chunk]  # (B, k, n)
        decoded = decoder.decode_each_single(outputs, parity(encoder(data.test_x[chunk])))  # (B, r, k, n)
        base_logp = torch.log_softmax(outputs, dim=-1).unsqueeze(1).expand_as(decoded)
        dec_logp = torch.log_softmax(decoded, dim=-1)
        kl = (base_logp.exp() * (base_logp - dec_logp)).sum(-1)  # (B, r, k)
        b, r, k = kl.shape
        group_id = (torch.arange(b) + offset).view(b, 1, 1).expand(b, r, k)
        parity_id = torch.arange(r).view(1, r, 1).expand(b, r, k)
        position = torch.arange(k).view(1, 1, k).expand(b, r, k)
        test_index = chunk.cpu().view(b, 1, k).expand(b, r, k)
        frames.append(
            pd.DataFrame(
                {
                    "group_id": group_id.reshape(-1).numpy(),
                    "position": position.reshape(-1).numpy().astype("int16"),
                    "parity": parity_id.reshape(-1).numpy().astype("int16"),
                    "test_index": test_index.reshape(-1).numpy(),
                    "label": data.test_y.cpu()[test_index.reshape(-1)].numpy(),
                    "base_prediction": base_logp.argmax(-1).reshape(-1).cpu().numpy(),
                    "decoded_prediction": dec_logp.argmax(-1).reshape(-1).cpu().numpy(),
                    "base_top_probability": base_logp.max(-1).values.exp().reshape(-1).cpu().numpy(),
                    "decoded_top_probability": dec_logp.max(-1).values.exp().reshape(-1).cpu().numpy(),
                    "kl_base_decoded": kl.reshape(-1).cpu().numpy(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def write_predictions(run_dir, parity, groups, data, base_outputs, encoder, decoder, config) -> None:
    """``predictions.parquet`` of the best checkpoint, written once the run reaches its last epoch."""
    from .storage import write_parquet

    current = {k: v.clone() for k, v in parity.state_dict().items()}
    best = torch.load(run_dir / "checkpoints" / "best.pt", map_location=data.test_x.device, weights_only=False)
    parity.load_state_dict(best["parity_state"])
    try:
        frame = predictions_frame(parity, groups, data, base_outputs, encoder, decoder, config)
    finally:
        parity.load_state_dict(current)
    write_parquet(frame, str(run_dir / "predictions.parquet"), {"parity_ray.best_epoch": best["epoch"]})


def restore(path: Path, data, parity, optimizer, scheduler, device) -> RunState:
    checkpoint = torch.load(path, map_location=device, weights_only=False)
    if checkpoint["split"]["val_indices_sha256"] != data.split["val_indices_sha256"]:
        raise UsageError(f"checkpoint {path} was trained on a different validation split; the dataset files changed")
    parity.load_state_dict(checkpoint["parity_state"])
    optimizer.load_state_dict(checkpoint["optimizer_state"])
    if scheduler is not None and checkpoint["scheduler_state"] is not None:
        scheduler.load_state_dict(checkpoint["scheduler_state"])
    return RunState(**checkpoint["state"])


def summarize(config, run_dir, state: RunState, base_info: BaseModelInfo, available, startup_seconds, device) -> dict:
    def row(epoch: int, split: str) -> dict:
        return next((r for r in state.history if r["epoch"] == epoch and r["split"] == split), {})

    best_test, final_test = row(state.best_epoch, "test"), row(state.epoch, "test")
    return {
        "run_dir": str(run_dir),
        "dataset": config.dataset,
        "model": spec_name(config.model),
        "parity_model": spec_name(config.parity_model),
        "k": config.k,
        "r": config.r,
        "encoder": spec_name(config.encoder),
        "decoder": spec_name(config.decoder),
        "loss": spec_name(config.loss),
        "seed": config.seed,
        "available_accuracy": available["test"],
        "degraded_accuracy": best_test.get("overall_top1"),
        "reconstruction_accuracy": best_test.get("reconstruction_top1"),
        "degraded_top5": best_test.get("overall_top5"),
        "reconstruction_top5": best_test.get("reconstruction_top5"),
        "best_epoch": state.best_epoch,
        "best_val_reconstruction": state.best_score,
        "final_degraded_accuracy": final_test.get("overall_top1"),
        "final_reconstruction_accuracy": final_test.get("reconstruction_top1"),
        "epochs": state.epoch,
        "startup_seconds": round(startup_seconds, 3),
        "train_seconds": round(state.train_seconds, 3),
        "base_model_id": base_info.id,
        "base_model_source": base_info.source,
        "device": str(device),
        "checkpoint": str(run_dir / "checkpoints" / "best.pt"),
    }
