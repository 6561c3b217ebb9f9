"""Train one parity model run: data -> frozen base -> encoder -> parity model -> decoder -> metrics -> report.

The base model's outputs are computed once per split and cached, so an epoch only
runs the parity model. Each training epoch draws fresh random k-groups (seeded by
seed and epoch, so a resumed run sees the same groups); validation and test groups
are fixed. Checkpoints (latest, best) carry the resolved config, seed and versions.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from .augment import black_level, get_augmentation
from .base import BaseModelInfo, cached_base_outputs, compute_outputs, majority_accuracy, prepare_base_model, task_accuracy
from .coders import code_family, create_code, erasure_patterns, is_base_worker, rebuilt_slots, training_patterns
from .config import SUPPORTED_TASKS, TrainConfig  # noqa: F401 - SUPPORTED_TASKS: the trainer's tasks, owned by config
from .data import DataBundle, load_data
from .errors import UsageError
from .losses import LossInputs, create_loss
from .metrics import EPOCH_SELECTION_METRIC, MetricAccumulator, improves
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
    """Trained workers, one per coded query: (B, m, C, H, W) -> (B, m, n)."""

    def __init__(self, build: Callable[[], nn.Module], count: int):
        super().__init__()
        self.models = nn.ModuleList(build() for _ in range(count))

    def forward(self, coded_queries: torch.Tensor) -> torch.Tensor:
        return torch.stack([model(coded_queries[:, j]) for j, model in enumerate(self.models)], dim=1)


class FrozenBaseWorkers(nn.Module):
    """F itself on every coded query (``parity_model="base"``): frozen, in eval mode, gradients pass
    through to a learned encoder. F is held outside the module's state so checkpoints never copy it
    (its lineage is recorded) and ``train()`` never flips its batch-norm layers."""

    def __init__(self, base_model: nn.Module):
        super().__init__()
        base_model.eval().requires_grad_(False)
        object.__setattr__(self, "base", base_model)

    def forward(self, coded_queries: torch.Tensor) -> torch.Tensor:
        b, m = coded_queries.shape[:2]
        return self.base(coded_queries.flatten(0, 1)).reshape(b, m, -1)


@dataclass
class Code:
    """Encoder -> workers -> decoder, and what of it is trained."""

    encoder: nn.Module
    workers: nn.Module
    decoder: nn.Module
    systematic: bool
    k: int
    r: int
    task: str = "classification"  # the dataset's: "regression" outputs are boxes, scored by IoU

    @property
    def n(self) -> int:
        return self.k + self.r

    def modules(self) -> Dict[str, nn.Module]:
        return {"parity": self.workers, "encoder": self.encoder, "decoder": self.decoder}

    def trainable_parameters(self) -> List[nn.Parameter]:
        return [p for module in self.modules().values() for p in module.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> None:
        for module in self.modules().values():
            module.train(mode)

    def state(self) -> Dict[str, Dict[str, torch.Tensor]]:
        """``{"parity_state", "encoder_state", "decoder_state"}``: plain CPU state_dicts (empty when fixed).

        Copies, never views of the live weights (on the CPU ``.cpu()`` alone would alias them).
        """
        return {f"{name}_state": {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
                for name, module in self.modules().items()}

    def load_state(self, checkpoint: Dict[str, Any]) -> None:
        for name, module in self.modules().items():
            module.load_state_dict(checkpoint.get(f"{name}_state") or {})

    def worker_outputs(self, queries: torch.Tensor, base_outputs: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(outputs of all n workers (B, n, C), outputs of the coded workers (B, m, C))``.

        A systematic code's first k workers are F on the raw queries, whose outputs are cached.
        """
        coded_outputs = self.workers(self.encoder(queries))
        if self.systematic:
            return torch.cat([base_outputs, coded_outputs], dim=1), coded_outputs
        return coded_outputs, coded_outputs


class WeightAverage:
    """An exponential moving average (Polyak) of a code's weights, updated after every optimiser step.

    Late in training the weights wander around a good point with the optimiser's noise; their
    average sits nearer it, so it scores higher sooner and moves less from epoch to epoch (which
    also steadies the choice of the best epoch). Evaluation, ``best.pt`` and predictions use the
    average; ``latest.pt`` keeps the live weights and the average, so a resumed run is exact.
    The decay warms up as ``min(decay, (1 + t) / (10 + t))`` so that early averages are not
    dominated by the initial weights.
    """

    def __init__(self, code: "Code", decay: float):
        self.decay, self.steps = decay, 0
        # state_dict tensors share storage with the parameters and buffers, which the optimiser
        # and batch norm update in place: this list always holds the live values.
        trained = [m for m in code.modules().values() if any(p.requires_grad for p in m.parameters())]
        live = [t for module in trained for t in module.state_dict().values()]
        self.live = [t for t in live if t.is_floating_point()]
        self.average = [t.detach().clone() for t in self.live]

    @torch.no_grad()
    def update(self) -> None:
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        torch._foreach_lerp_(self.average, self.live, 1.0 - decay)

    @contextlib.contextmanager
    def applied(self):
        """The averaged weights in place of the live ones, for the duration of the block."""
        with torch.no_grad():
            live = [t.clone() for t in self.live]
            torch._foreach_copy_(self.live, self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.live, live)

    def state(self) -> Dict[str, Any]:
        return {"weight_average": {"steps": self.steps, "tensors": [t.detach().cpu() for t in self.average]}}

    def load_state(self, checkpoint: Dict[str, Any]) -> None:
        saved = checkpoint.get("weight_average")
        if saved is None:
            raise UsageError("the checkpoint holds no weight average (it was trained with ema_decay 0)")
        self.steps = int(saved["steps"])
        with torch.no_grad():
            torch._foreach_copy_(self.average, [t.to(a.device) for t, a in zip(saved["tensors"], self.average)])


def averaged(average: Optional[WeightAverage]):
    return average.applied() if average is not None else contextlib.nullcontext()


def build_code(config: TrainConfig, spec, base_model: nn.Module, device, train_targets: Optional[torch.Tensor] = None) -> Code:
    """The code a resolved config asks for; the network it names is the one that runs, with its weights.

    (The original learned-code configurations loaded the base weights into the base model and
    left the worker randomly initialised and frozen; here ``parity_model="base"`` runs F with F's
    weights, and a trained worker is trained.)
    """
    encoder, decoder = create_code(config, spec.input_shape, spec.num_classes)
    if is_base_worker(config.parity_model):
        workers: nn.Module = FrozenBaseWorkers(base_model)
    else:
        def build() -> nn.Module:
            model = create_model(config.parity_model, input_shape=spec.input_shape, num_classes=spec.num_classes)
            if config.parity_init == "base":
                model.load_state_dict(base_model.state_dict())
            return model

        workers = ParityModels(build, encoder.num_coded)
        if spec.task == "regression" and config.parity_init == "random" and train_targets is not None:
            init_regression_bias(workers, decoder, train_targets, config.k)
    return Code(encoder.to(device), workers.to(device), decoder.to(device), encoder.systematic, config.k, config.r, spec.task)


def last_linear(model: nn.Module) -> Optional[nn.Linear]:
    """The model's output layer: its last ``nn.Linear`` in registration order."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return layers[-1] if layers else None


@torch.no_grad()
def init_regression_bias(workers: "ParityModels", decoder: nn.Module, train_targets: torch.Tensor, k: int) -> None:
    """Each parity model's last bias starts at what its decoder expects for k mean training boxes.

    For the subtraction decoder (the sum of the k outputs) that is k times the mean training box,
    as the parity-models artifact initialised its localisation parity models; it spares the model
    learning a large constant offset first.
    """
    mean = train_targets.float().mean(0).cpu()
    expected = decoder.target(mean.view(1, 1, -1).expand(1, k, -1)) if hasattr(decoder, "target") else None
    for j, model in enumerate(workers.models):
        layer = last_linear(model)
        if layer is None or layer.bias is None:
            continue
        value = expected[0, j] if expected is not None and j < expected.shape[1] else k * mean
        if value.shape == layer.bias.shape:
            layer.bias.copy_(value.to(layer.bias.device, layer.bias.dtype))


# --------------------------------------------------------------------------- the run


def train(
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
    # F's outputs on every split, from the on-disk cache (keyed by F's weights, split and normalisation) when present.
    base_outputs, outputs_cached = cached_base_outputs(base_model, config, data, device, SPLITS, log)
    available = {s: task_accuracy(base_outputs[s], data.split_tensors(s)[1], data.spec.task) for s in SPLITS}
    base_rate = {s: majority_accuracy(data.split_tensors(s)[1], data.spec.task) for s in SPLITS}  # the bar a code must clear
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
                results[split] = evaluate(eval_groups[split], x, y, base_outputs[split], code, loss_fn, config)
            evaluated = code.state() if average is not None else None
        for split, metrics in results.items():
            state.history.append({"epoch": epoch, "split": split, **metrics, "available_accuracy": available[split],
                                  **({"majority_accuracy": base_rate[split]} if base_rate[split] is not None else {})})
        state.epoch = epoch
        improved = epoch == 0 or improves(results["val"], state.best_score)
        if improved:
            state.best_epoch, state.best_score = epoch, results["val"][EPOCH_SELECTION_METRIC]
        save_checkpoints(run_dir, config, state, code, optimizer, scheduler, base_info, data, improved,
                         evaluated=evaluated, extra=average.state() if average is not None else None)
        if epoch == config.epochs or (improved and predictions_on_improvement):
            write_predictions(run_dir, code, eval_groups["test"], data, base_outputs["test"], config)
        if should_log(epoch, config.epochs, time.perf_counter() - epoch_started):
            loss = results.get("train", results["val"])["loss"]
            log(
                f"epoch {epoch}/{config.epochs}  loss {loss:.4f}  "
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
    summary["base_outputs_cached"] = outputs_cached  # F's outputs came from the on-disk cache
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


def decode_under(code: Code, outputs: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
    """Estimates ``(B, P, k, C)`` under patterns shared by every group ``(P, n)`` or per group ``(B, P, n)``."""
    if patterns.dim() == 2:
        return code.decoder.decode_patterns(outputs, patterns)
    b, p, n = patterns.shape
    expanded = outputs.unsqueeze(1).expand(b, p, *outputs.shape[1:]).flatten(0, 1)
    return code.decoder.decode(expanded, patterns.flatten(0, 1)).reshape(b, p, code.k, -1)


def forward_groups(groups, x, base_outputs, labels, code: Code, loss_fn, patterns: torch.Tensor):
    """:func:`forward_batch` on the groups' queries and F's cached answers to them."""
    return forward_batch(x[groups], base_outputs[groups], labels[groups], code, loss_fn, patterns)


def forward_batch(queries, outputs, labels, code: Code, loss_fn, patterns: torch.Tensor):
    """Encode the queries, run the workers, decode under each erasure pattern, compute the loss.

    ``queries`` ``(B, k, ...)``, ``outputs`` F's answers to exactly those queries ``(B, k, C)``;
    ``patterns``: availability masks, shared ``(P, n)`` or per group ``(B, P, n)``.
    """
    all_outputs, coded_outputs = code.worker_outputs(queries, outputs)
    decoded = decode_under(code, all_outputs, patterns)
    rebuilt = rebuilt_slots(patterns.to(decoded.device), code.k, code.systematic)
    batch = LossInputs(
        parity_outputs=coded_outputs,
        parity_targets=code.decoder.target(outputs),
        decoded=decoded,
        rebuilt=rebuilt.expand(decoded.shape[:-1]),
        base_outputs=outputs,
        labels=labels,
    )
    return loss_fn(batch), batch


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


def train_one_epoch(config, epoch, data, base_outputs, code: Code, loss_fn, optimizer, progress, base_model=None,
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


DECODE_CHUNK_ELEMENTS = 1 << 24  # bounds (groups x patterns x k x classes) held at once when scoring


def _pattern_chunks(patterns: torch.Tensor, groups: int, k: int, classes: int):
    step = max(1, DECODE_CHUNK_ELEMENTS // max(1, groups * k * classes))
    return patterns.split(step)


@torch.no_grad()
def evaluate(groups, x, labels, base_outputs, code: Code, loss_fn, config) -> Dict[str, float]:
    """Loss, and both measures under every erasure pattern of e = 0..r workers (and Byzantine ones).

    e = 0 (every worker back) gives ``all_accuracy_e0``: what the code costs with no failure (a
    non-systematic code decodes every answer even then)."""
    code.train(False)
    metrics = MetricAccumulator(task=code.task)
    singles = erasure_patterns(code.n, 1).to(x.device)
    byzantine = getattr(code.decoder, "byzantine", 0)
    generator = torch.Generator().manual_seed(config.seed * 104_729 + 17)
    for idx in groups.split(max(1, config.eval_batch_size // config.k)):
        loss, batch = forward_groups(idx, x, base_outputs, labels, code, loss_fn, singles)
        metrics.add_loss(loss, len(idx))
        outputs, group_labels = base_outputs[idx], labels[idx]
        all_outputs, _ = code.worker_outputs(x[idx], outputs)
        for e in range(0, code.r + 1):
            patterns = erasure_patterns(code.n, e).to(x.device)
            for chunk in _pattern_chunks(patterns, len(idx), code.k, outputs.shape[-1]):
                decoded = batch.decoded if (e == 1 and chunk.shape == singles.shape) else decode_under(code, all_outputs, chunk)
                metrics.add_patterns(e, decoded, rebuilt_slots(chunk, code.k, code.systematic), outputs, group_labels)
        if byzantine:
            score_byzantine(metrics, code, all_outputs, outputs, group_labels, byzantine, generator)
    return metrics.result()


BYZANTINE_NOISE = 5.0  # scale of an injected wrong output's error, in standard deviations of the outputs


def score_byzantine(metrics: MetricAccumulator, code: Code, all_outputs, base_outputs, labels, errors: int, generator) -> None:
    """E wrong outputs among the returned ones, with as many stragglers S as the locator tolerates
    (``decoder.tolerated_stragglers``: r minus what the locator needs): answers with and without locating.

    A wrong output is the worker's output plus Gaussian noise ``BYZANTINE_NOISE`` times the spread
    of the outputs. Located workers are treated as unavailable. This is the only place the locator
    runs: the erasure figures never locate.
    """
    b, n, c = all_outputs.shape
    stragglers = int(getattr(code.decoder, "tolerated_stragglers", code.r - 2 * errors))
    patterns = erasure_patterns(n, stragglers).to(all_outputs.device) if stragglers else torch.ones(1, n, dtype=torch.bool, device=all_outputs.device)
    for pattern in patterns:
        scores = torch.rand(b, n, generator=generator).to(all_outputs.device)
        scores[:, ~pattern] = 2.0  # never pick an unavailable worker
        bad = scores.topk(errors, dim=1, largest=False).indices  # (B, E)
        corrupted = all_outputs.clone()
        noise = torch.randn(b, errors, c, generator=generator).to(all_outputs.device) * (BYZANTINE_NOISE * all_outputs.std())
        corrupted.scatter_add_(1, bad.unsqueeze(-1).expand(b, errors, c), noise)
        available = pattern.unsqueeze(0).expand(b, n)
        kept = code.decoder.drop_suspects(corrupted, available)
        located = (~kept).gather(1, bad)  # (B, E): each injected output was left out
        served = []
        for mask in (kept, available):
            estimates = code.decoder.decode(corrupted, mask)
            rebuilt = rebuilt_slots(mask, code.k, code.systematic)
            returned = corrupted[:, : code.k] if code.systematic else estimates
            served.append(torch.where(rebuilt.unsqueeze(-1), estimates, returned).argmax(-1).unsqueeze(1))
        metrics.add_byzantine(served[0], served[1], labels, located, b * errors)


def _progress(batches, epoch, epochs, enabled):
    if not enabled:
        return batches
    from tqdm.auto import tqdm

    return tqdm(batches, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False, file=sys.stderr)


def make_optimizer(config: TrainConfig, parameters: List[nn.Parameter]) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        # The fused kernel is ~1.6x faster per step for the small parity models of the paper.
        return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


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


def save_checkpoints(run_dir, config, state, code: Code, optimizer, scheduler, base_info, data, improved,
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
    from .utils import load_torch_safely

    return load_torch_safely(path, f"checkpoint {path}", map_location=device)


PREDICTION_TOPK = 5


@torch.no_grad()
def predictions_frame(code: Code, groups, data: DataBundle, base_outputs, config):
    """Per test group x erasure pattern x rebuilt slot: labels, predictions, top-5 scores, KL(base || decoded)
    (regression: the true, base and decoded boxes and their IoUs instead).

    Every single-erasure pattern is listed; for e = 2..r one seeded random pattern per group
    (the metrics cover every pattern; listing them all would grow as C(k + r, e)). This is what
    lets an analyst ask *which* predictions break under erasure.
    """
    import numpy as np
    import pandas as pd

    code.train(False)
    generator = torch.Generator().manual_seed(config.seed * 15_485_863 + 5)
    frames = []
    step = max(1, config.eval_batch_size // config.k)
    for offset in range(0, len(groups), step):
        chunk = groups[offset : offset + step]
        outputs = base_outputs[chunk]  # (B, k, n)
        all_outputs, _ = code.worker_outputs(data.test_x[chunk], outputs)
        b = len(chunk)
        for e in range(1, code.r + 1):
            patterns = erasure_patterns(code.n, e).to(chunk.device)
            if e == 1:
                per_group = patterns.unsqueeze(0).expand(b, *patterns.shape)
            else:
                pick = torch.randint(0, len(patterns), (b,), generator=generator).to(chunk.device)
                per_group = patterns[pick].unsqueeze(1)
            decoded = decode_under(code, all_outputs, per_group)  # (B, P, k, n)
            rebuilt = rebuilt_slots(per_group, code.k, code.systematic)  # (B, P, k)
            group_idx, pattern_idx, position = rebuilt.nonzero(as_tuple=True)
            dec = decoded[group_idx, pattern_idx, position]
            base = outputs[group_idx, position]
            test_index = chunk[group_idx, position].cpu()
            lost = ~per_group[group_idx, pattern_idx]  # (N, n)
            pattern_text = [",".join(map(str, row.nonzero().flatten().tolist())) for row in lost.cpu()]
            common = {
                "group_id": (group_idx + offset).cpu().numpy().astype("int64"),
                "erasures": np.full(len(group_idx), e, dtype="int16"),
                "pattern": pattern_text,
                "position": position.cpu().numpy().astype("int16"),
                "test_index": test_index.numpy().astype("int64"),
            }
            if code.task == "regression":
                frames.append(pd.DataFrame({**common, **box_prediction_columns(dec, base, data.test_y[chunk[group_idx, position]])}))
                continue
            base_logp, dec_logp = torch.log_softmax(base, -1), torch.log_softmax(dec, -1)
            kl = (base_logp.exp() * (base_logp - dec_logp)).sum(-1)
            top = min(PREDICTION_TOPK, base.shape[-1])
            base_top, dec_top = base_logp.topk(top, -1), dec_logp.topk(top, -1)
            frames.append(
                pd.DataFrame(
                    {
                        **common,
                        "label": data.test_y.cpu()[test_index].numpy().astype("int64"),
                        "base_prediction": base_top.indices[:, 0].cpu().numpy().astype("int64"),
                        "decoded_prediction": dec_top.indices[:, 0].cpu().numpy().astype("int64"),
                        "base_top_probability": base_top.values[:, 0].exp().cpu().numpy().astype("float32"),
                        "decoded_top_probability": dec_top.values[:, 0].exp().cpu().numpy().astype("float32"),
                        "kl_base_decoded": kl.cpu().numpy().astype("float32"),
                        "base_top5": list(base_top.indices.cpu().numpy().astype("int16")),
                        "base_top5_probabilities": list(base_top.values.exp().cpu().numpy().astype("float32")),
                        "decoded_top5": list(dec_top.indices.cpu().numpy().astype("int16")),
                        "decoded_top5_probabilities": list(dec_top.values.exp().cpu().numpy().astype("float32")),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def box_prediction_columns(decoded: torch.Tensor, base: torch.Tensor, true: torch.Tensor) -> Dict[str, Any]:
    """Regression rows: the true, base and decoded boxes ``[x, y, w, h]`` and their pairwise IoUs (no class columns)."""
    from .boxes import box_iou

    def boxes(t: torch.Tensor):
        return list(t.detach().float().cpu().numpy().astype("float32"))

    return {
        "true_box": boxes(true),
        "base_box": boxes(base),
        "decoded_box": boxes(decoded),
        "iou_decoded_true": box_iou(decoded, true).cpu().numpy().astype("float32"),
        "iou_base_true": box_iou(base, true).cpu().numpy().astype("float32"),
        "iou_decoded_base": box_iou(decoded, base).cpu().numpy().astype("float32"),
    }


def write_predictions(run_dir, code: Code, groups, data, base_outputs, config) -> None:
    """``predictions.parquet`` of the best checkpoint, written once the run reaches its last epoch."""
    from .storage import write_parquet

    current = code.state()
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt", data.test_x.device)
    code.load_state(best)
    try:
        frame = predictions_frame(code, groups, data, base_outputs, config)
    finally:
        code.load_state(current)
    write_parquet(frame, str(run_dir / "predictions.parquet"), {"parity_ray.best_epoch": best["epoch"]})


def restore(path: Path, data, code: Code, optimizer, scheduler, device, average: Optional[WeightAverage] = None) -> RunState:
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


def erasure_summary(row: Dict[str, Any], r: int) -> Dict[str, Optional[float]]:
    """``all_accuracy_e0``, then ``degraded_accuracy_e<e>`` and ``all_accuracy_e<e>`` for e = 1..r, from one
    split's metrics row."""
    out: Dict[str, Optional[float]] = {"all_accuracy_e0": row.get("all_accuracy_e0")}
    for e in range(1, r + 1):
        out[f"degraded_accuracy_e{e}"] = row.get(f"degraded_accuracy_e{e}")
        out[f"all_accuracy_e{e}"] = row.get(f"all_accuracy_e{e}")
    for key in ("byzantine_accuracy", "byzantine_accuracy_unlocated", "byzantine_located"):
        if key in row:
            out[key] = row[key]
    return out


def data_task(config) -> str:
    from .data import get_dataset_spec

    return get_dataset_spec(config.dataset).task


def summarize(config, run_dir, state: RunState, base_info: BaseModelInfo, available, startup_seconds, device) -> dict:
    def row(epoch: int, split: str) -> dict:
        return next((r for r in state.history if r["epoch"] == epoch and r["split"] == split), {})

    best_test, final_test = row(state.best_epoch, "test"), row(state.epoch, "test")
    best_val = row(state.best_epoch, "val")
    return {
        "run_dir": str(run_dir),
        "dataset": config.dataset,
        "model": spec_name(config.model),
        "parity_model": spec_name(config.parity_model),
        "k": config.k,
        "r": config.r,
        "encoder": spec_name(config.encoder),
        "decoder": spec_name(config.decoder),
        "systematic": config.systematic,
        "code_family": code_family(config.encoder, config.decoder),
        "worker": "base" if is_base_worker(config.parity_model) else "trained",
        "loss": spec_name(config.loss),
        "seed": config.seed,
        "available_accuracy": available["test"],
        "majority_accuracy": best_test.get("majority_accuracy"),
        "degraded_accuracy": best_test.get("overall_top1"),
        "reconstruction_accuracy": best_test.get("reconstruction_top1"),
        "degraded_top5": best_test.get("overall_top5"),
        "reconstruction_top5": best_test.get("reconstruction_top5"),
        "task": data_task(config),
        **({"degraded_mean_iou": best_test.get("mean_iou"), "reconstruction_mean_iou": best_test.get("reconstruction_mean_iou")}
           if "mean_iou" in best_test else {}),
        **erasure_summary(best_test, config.r),
        "best_epoch": state.best_epoch,
        "best_val_reconstruction": state.best_score,
        "val_degraded_accuracy": best_val.get("overall_top1"),
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
