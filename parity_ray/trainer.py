"""Train one coded run: data -> frozen base -> encoder -> workers -> decoder -> metrics -> report.

The loop lives here; each step's parts live beside it: the code (``pipeline``: encoder, workers,
decoder), its optimisation (``optimization``), scoring (``evaluation``: every erasure pattern,
Byzantine outputs), the run folder (``checkpoints``) and what a finished run leaves
(``predictions``: per-instance rows, the summary).

The base model's outputs are computed once per split and cached, so an epoch only
runs the parity model. Each training epoch draws fresh random k-groups (seeded by
seed and epoch, so a resumed run sees the same groups); validation and test groups
are fixed. Checkpoints (latest, best) carry the resolved config, seed and versions.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from .augment import black_level, get_augmentation
from .base import cached_base_outputs, compute_outputs, prepare_base_model
from .bounds import check_output_dir
from .checkpoints import RunState, existing_checkpoint, restore, save_checkpoints, write_run_record
from .coders import training_patterns
from .config import TrainConfig
from .data import DataBundle, load_data
from .evaluation import evaluate, fixed_groups, forward_batch
from .losses import create_loss
from .logs import stderr_log
from .machine import resolve_device
from .metrics import EPOCH_SELECTION_METRIC, MetricAccumulator, improves
from .optimization import WeightAverage, averaged, make_optimizer, make_scheduler
from .pipeline import CodePipeline, build_code
from .predictions import summarize, write_predictions
from .atomic import atomic_write_json
from .errors import UsageError
from .tasks import get_task

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


# --------------------------------------------------------------------------- the run


def train(
    config: TrainConfig,
    *,
    progress: bool = True,
    log: Log = stderr_log,
    on_epoch: Optional[Callable[[EpochReport], None]] = None,
    predictions_on_improvement: bool = False,
) -> RunResult:
    """Train (or resume) the run described by ``config``; return its summary (see :func:`_train`).

    ``num_threads`` holds for this run only: torch's thread count is put back when it ends, so a
    run in a notebook or a test process leaves the next one's numbers as they would be alone."""
    threads = torch.get_num_threads()
    try:
        return _train(config, progress=progress, log=log, on_epoch=on_epoch,
                      predictions_on_improvement=predictions_on_improvement)
    finally:
        torch.set_num_threads(threads)


def _train(
    config: TrainConfig,
    *,
    progress: bool = True,
    log: Log = stderr_log,
    on_epoch: Optional[Callable[[EpochReport], None]] = None,
    predictions_on_improvement: bool = False,
) -> RunResult:
    """Train (or resume) the run described by ``config``; return its summary.

    ``on_epoch`` is called after every saved epoch (Tune reports from it); it may
    raise :class:`StopTraining` to end the run early. With ``epochs=0`` the code is evaluated
    once (as epoch 0) and saved like a trained one. ``predictions_on_improvement`` writes the
    predictions of every new best epoch at once (not only at the last epoch), so that a run a
    Tune scheduler stops early still holds the predictions of its best checkpoint.
    """
    config = config.validate().resolved()
    check_output_dir(config.out, "--out")  # one line, before anything is read or written
    run_dir = Path(config.out) / config.run_name()
    checkpoint = existing_checkpoint(run_dir, config)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    device = resolve_device(config.device)
    started = time.perf_counter()

    # Data, then the frozen base model whose outputs every epoch reuses.
    data = load_data(config.dataset, data_root=config.data_root, download=config.download, val_size=config.val_size,
                     split_seed=config.seed, input_norm=config.input_norm, device=device).head(config.max_examples)
    check_data_bounds(config, data)  # the bounds the data sets, before the base model or the run is written
    base_model, base_info = prepare_base_model(config, data, device, log)
    # F's outputs on every split, from the on-disk cache (keyed by F's weights, split and normalisation) when present.
    base_outputs, outputs_cached = cached_base_outputs(base_model, config, data, device, SPLITS, log)
    task = get_task(data.spec.task)
    available = {s: task.accuracy(base_outputs[s], data.split_tensors(s)[1]) for s in SPLITS}
    base_rate = {s: task.base_rate(data.split_tensors(s)[1]) for s in SPLITS}  # the bar a code must clear
    startup_seconds = time.perf_counter() - started

    # The code: encoder -> workers (trained parity models, or F) -> decoder, and what is trained.
    torch.manual_seed(config.seed)
    code = build_code(config, data.spec, base_model, device, train_targets=data.train_y)
    loss_fn = create_loss(config.loss)
    parameters = code.trainable_parameters()
    optimizer = make_optimizer(config, parameters) if parameters else None
    scheduler = make_scheduler(config, optimizer) if optimizer is not None else None
    average = WeightAverage(code, config.ema_decay) if config.ema_decay and optimizer is not None else None

    state = RunState()
    if checkpoint is not None:
        state = restore(checkpoint, data, code, optimizer, scheduler, device, average)
        log(f"resuming {run_dir} after epoch {state.epoch}")
    write_run_record(run_dir, config, data, base_info, device)

    eval_groups = {s: fixed_groups(len(data.split_tensors(s)[1]), config, s, device) for s in EVAL_SPLITS}
    if config.max_eval_groups:
        eval_groups = {s: g[: config.max_eval_groups] for s, g in eval_groups.items()}

    # Epoch 0 (evaluate only) for codes with nothing to train; 1..epochs otherwise.
    first = 0 if config.epochs == 0 and not state.history else state.epoch + 1
    for epoch in range(first, config.epochs + 1):
        epoch_started = time.perf_counter()
        results = {}
        if epoch > 0:
            results["train"] = train_one_epoch(config, epoch, data, base_outputs, code, loss_fn, optimizer, progress,
                                               base_model, average)
            if scheduler is not None:
                scheduler.step()
        state.train_seconds += time.perf_counter() - epoch_started
        with averaged(average):  # the weights a run stopped here would report (and best.pt would hold)
            for split in EVAL_SPLITS:
                x, y = data.split_tensors(split)
                results[split] = evaluate(eval_groups[split], x, y, base_outputs[split], code, loss_fn, config,
                                          progress=progress, desc=f"epoch {epoch}/{config.epochs} {split}")
            evaluated = code.state() if average is not None else None
        improved = record_epoch(state, epoch, results, available, base_rate)
        save_checkpoints(run_dir, config, state, code, optimizer, scheduler, base_info, data, improved,
                         evaluated=evaluated, extra=average.state() if average is not None else None)
        if epoch == config.epochs or (improved and predictions_on_improvement):
            write_predictions(run_dir, code, eval_groups["test"], data, base_outputs["test"], config)
        seconds = time.perf_counter() - epoch_started
        if should_log(epoch, config.epochs, seconds):
            log(epoch_line(epoch, config.epochs, results, seconds))
        if on_epoch is not None:
            report = EpochReport(epoch, results, state.train_seconds, improved, run_dir, run_dir / "checkpoints")
            try:
                on_epoch(report)
            except StopTraining:
                break

    summary = summarize(config, run_dir, state, base_info, available, startup_seconds, device)
    summary["base_outputs_cached"] = outputs_cached  # F's outputs came from the on-disk cache
    atomic_write_json(run_dir / "summary.json", summary)
    return RunResult(run_dir=run_dir, summary=summary, history=state.history)


def check_data_bounds(config: TrainConfig, data: DataBundle) -> None:
    """What only the data can say: every split holds at least one whole k-group (else training has no
    batch and the evaluation groups cannot wrap around); a one-line :class:`UsageError` otherwise."""
    n, split = min((len(data.split_tensors(split)[1]), split) for split in ("train", *EVAL_SPLITS))
    if config.k > n:
        raise UsageError(f"k must be <= {n} for '{config.dataset}' (its {split} split holds {n} examples), got {config.k}")


def record_epoch(state: RunState, epoch: int, results: Dict[str, Dict[str, float]], available, base_rate) -> bool:
    """Add an epoch's metrics to the run's history (with F's own accuracy and the base rate beside
    them); return whether it is the best epoch so far (always, for epoch 0), and note it if so."""
    for split, metrics in results.items():
        state.history.append({"epoch": epoch, "split": split, **metrics, "available_accuracy": available[split],
                              **({"majority_accuracy": base_rate[split]} if base_rate[split] is not None else {})})
    state.epoch = epoch
    improved = epoch == 0 or improves(results["val"], state.best_score)
    if improved:
        state.best_epoch, state.best_score = epoch, results["val"][EPOCH_SELECTION_METRIC]
    return improved


def epoch_line(epoch: int, epochs: int, results: Dict[str, Dict[str, float]], seconds: float) -> str:
    loss = results.get("train", results["val"])["loss"]
    return (f"epoch {epoch}/{epochs}  loss {loss:.4f}  val recon {results['val']['reconstruction_top1']:.4f}  "
            f"degraded {results['test']['overall_top1']:.4f}  ({seconds:.1f} s)")


def should_log(epoch: int, epochs: int, seconds: float) -> bool:
    """Slow epochs always; fast ones about 20 times a run, so long runs stay readable."""
    return seconds >= 2.0 or epoch == epochs or epoch % max(1, epochs // 20) == 0


# --------------------------------------------------------------------------- one epoch


def random_groups(n: int, k: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """Fresh k-groups for one training epoch: (n // k, k) indices, seeded by (seed, epoch)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=generator)
    return order[: (n // k) * k].view(-1, k).to(device)


@dataclass
class Augmenter:
    """Augments a batch's queries and recomputes F's answers to the augmented images (the targets)."""

    augmentation: Callable
    base_model: nn.Module
    black: List[float]
    generator: torch.Generator

    @torch.no_grad()
    def __call__(self, queries: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        flat = self.augmentation(queries.flatten(0, 1), self.generator, self.black)
        outputs = compute_outputs(self.base_model, flat)  # eval mode: F's batch-norm statistics, never updated
        return flat.view_as(queries), outputs.view(*queries.shape[:2], -1)


def training_batch(idx, data: DataBundle, base_outputs: Dict[str, torch.Tensor], augmenter: Optional[Augmenter]):
    """One batch's queries ``(B, k, ...)`` and F's answers to exactly those queries.

    Without augmentation the answers come from the cache; with it, F runs on the augmented images,
    so targets and inputs always match (the original paired augmented inputs with F's answers to
    the un-augmented images).
    """
    queries = data.train_x[idx]
    if augmenter is None:
        return queries, base_outputs["train"][idx]
    return augmenter(queries)


def make_augmenter(config: TrainConfig, data: DataBundle, base_model: nn.Module, epoch: int) -> Optional[Augmenter]:
    augmentation = get_augmentation(config.augment)
    if augmentation is None:
        return None
    generator = torch.Generator().manual_seed(config.seed * 1_000_037 + epoch)  # an epoch's draws fixed by (seed, epoch)
    return Augmenter(augmentation, base_model, black_level(data.normalization), generator)


def train_one_epoch(config, epoch, data, base_outputs, code: CodePipeline, loss_fn, optimizer, progress, base_model=None,
                    average: Optional[WeightAverage] = None):
    code.train()
    groups = random_groups(len(data.train_y), config.k, config.seed, epoch, data.train_x.device)
    batches = groups.split(config.batch_size)
    if config.max_train_batches:
        batches = batches[: config.max_train_batches]
    fixed = code.systematic and code.r == 1  # the k single data erasures, the same for every group
    generator = torch.Generator().manual_seed(config.seed * 1_000_033 + epoch)
    augmenter = make_augmenter(config, data, base_model, epoch) if base_model is not None else None
    metrics = MetricAccumulator(task=code.task)
    for idx in _progress(batches, epoch, config.epochs, progress):
        patterns = training_patterns(len(idx), code.k, code.r, code.systematic, generator)
        patterns = (patterns[0] if fixed else patterns).to(idx.device)
        queries, outputs = training_batch(idx, data, base_outputs, augmenter)
        loss, batch = forward_batch(queries, outputs, data.train_y[idx], code, loss_fn, patterns)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if average is not None:
            average.update()
        metrics.add_loss(loss, len(idx))
        metrics.add_rebuilt(batch.decoded.detach(), batch.rebuilt, batch.base_outputs, batch.labels)
    return metrics.result()


def _progress(batches, epoch, epochs, enabled):
    if not enabled:
        return batches
    from parity_ray.progress import progress

    return progress(batches, desc=f"epoch {epoch}/{epochs}", unit="batch", stream=sys.stderr)
