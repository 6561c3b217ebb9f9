"""Accuracy of coded inference under erasure patterns, accumulated over batches of groups.

For every group and every pattern of e = 1..r unavailable workers the decoder rebuilds the
outputs it lost (a systematic code: the unavailable data queries' outputs; a non-systematic
code: all k). Two measures for each e, both against the true label:

* **degraded accuracy** (``degraded_accuracy_e<e>``): the rebuilt outputs only. For a systematic
  code this is the parity-models convention (the missing output); for a non-systematic code every
  output is rebuilt, so all k count (ApproxIFER's measure).
* **all-k accuracy** (``all_accuracy_e<e>``): every answer of the group as a client receives it
  (exact where the query's own output arrived, rebuilt otherwise), the end-to-end figure that the
  serving simulation measures too.

``reconstruction_top1_e<e>`` scores rebuilt outputs against the base model's own prediction.
The e = 1 values also go by their first-wave names: ``overall_top1/top5`` (the degraded-mode
accuracy) and ``reconstruction_top1/top5``; on the training split they are computed over the
patterns each batch was trained on.

What a hit is belongs to the run's task (``parity_ray.tasks``): for box regression a hit is an
IoU >= 0.75 (the parity-models artifact's measure): ``overall_top1`` and
``degraded_accuracy_e<e>`` against the true box, ``reconstruction_top1`` against the base model's
own box. Top-5 does not apply and is not recorded; ``mean_iou`` (rebuilt vs true box) and
``reconstruction_mean_iou`` (rebuilt vs base box) are recorded beside the accuracies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch

from .tasks import get_task

Tensor = torch.Tensor

METRIC_NAMES = (
    "loss",
    "reconstruction_top1",
    "reconstruction_top5",
    "overall_top1",
    "overall_top5",
    "available_accuracy",
)


# Selection uses validation metrics only; test metrics are recorded, never optimised on.
EPOCH_SELECTION_METRIC = "reconstruction_top1"  # a run's best epoch: its validation reconstruction accuracy
TUNE_METRIC = "val_degraded_accuracy"  # what Tune's schedulers and search algorithms rank trials by


def best_epoch_row(val_rows: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """A run's best epoch (its validation metrics row): the highest validation reconstruction
    accuracy, the earliest epoch on ties. The trainer's checkpoints and the tables agree through it."""
    return max(val_rows, key=lambda r: (r[EPOCH_SELECTION_METRIC], -r["epoch"]), default=None)


def improves(val_metrics: Dict[str, Any], best_score: float) -> bool:
    """Whether an epoch's validation metrics beat the best so far (the same rule as ``best_epoch_row``)."""
    return val_metrics[EPOCH_SELECTION_METRIC] > best_score


def per_erasure_metric_names(r: int) -> list:
    """The per-e metric names a run with r extra workers records."""
    return [f"{m}_e{e}" for e in range(1, r + 1) for m in ("degraded_accuracy", "all_accuracy", "reconstruction_top1")]


@dataclass
class MetricAccumulator:
    """Hit counts and losses over batches; ``result()`` gives the split's metrics.

    ``available_accuracy`` (the base model alone) is computed once per split by the trainer.
    """

    # Sums stay tensors (on the training device) so that batches never wait on a host sync.
    sums: Dict[str, Tensor] = field(default_factory=dict)
    counts: Dict[str, int] = field(default_factory=dict)
    task: str = "classification"  # a registered task (parity_ray.tasks): it knows what a hit is

    def add(self, name: str, hits: Tensor, count: int) -> None:
        """Add ``hits`` (a bool tensor, or an already summed value) over ``count`` items to ``name``."""
        value = hits.sum() if hits.dtype == torch.bool else hits
        self.sums[name] = self.sums[name] + value if name in self.sums else value
        self.counts[name] = self.counts.get(name, 0) + int(count)

    @torch.no_grad()
    def add_loss(self, loss: Tensor, groups: int) -> None:
        self.add("loss", loss.detach().float() * groups, groups)

    @torch.no_grad()
    def add_rebuilt(self, decoded: Tensor, rebuilt: Tensor, base_outputs: Tensor, labels: Tensor, prefix: str = "") -> None:
        """The first-wave names over rebuilt slots: ``decoded`` (B, P, k, n), ``rebuilt`` (B or 1, P, k)."""
        mask = rebuilt.expand(decoded.shape[:-1])
        get_task(self.task).add_rebuilt(self, decoded, mask, base_outputs, labels, prefix)

    @torch.no_grad()
    def add_patterns(self, e: int, decoded: Tensor, rebuilt: Tensor, base_outputs: Tensor, labels: Tensor) -> None:
        """Both measures for patterns of e erasures: ``decoded`` (B, P, k, n), ``rebuilt`` (P, k)."""
        if e == 1:
            self.add_rebuilt(decoded, rebuilt.unsqueeze(0), base_outputs, labels)
        mask = rebuilt.unsqueeze(0).expand(decoded.shape[:-1])  # (B, P, k)
        get_task(self.task).add_patterns(self, e, decoded, mask, base_outputs, labels)

    @torch.no_grad()
    def add_byzantine(self, served_located: Tensor, served_unlocated: Tensor, labels: Tensor, located: Tensor, injected: int) -> None:
        """Answers as served with E wrong worker outputs: ``served_*`` (B, P, k) classes; ``located`` hits."""
        label = labels.unsqueeze(1).expand(served_located.shape)
        self.add("byzantine_accuracy", served_located == label, label.numel())
        self.add("byzantine_accuracy_unlocated", served_unlocated == label, label.numel())
        self.add("byzantine_located", located, injected)

    def result(self) -> Dict[str, float]:
        return {name: float(total) / max(self.counts[name], 1) for name, total in self.sums.items() if self.counts[name]}
