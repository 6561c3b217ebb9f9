"""Accuracy metrics of decoded outputs, accumulated over batches of coding groups.

For every group, every erasure position e and every parity j, the decoded output
stands in for the erased F(X_e). It is scored two ways:

* reconstruction top-1/top-5: does it agree with the base model's own prediction?
* overall top-1/top-5: does it predict the true label? Test overall top-1 is the
  *degraded-mode accuracy*: what a client sees when its answer had to be rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict

import torch

Tensor = torch.Tensor

METRIC_NAMES = (
    "loss",
    "reconstruction_top1",
    "reconstruction_top5",
    "overall_top1",
    "overall_top5",
    "available_accuracy",
)


def _topk_hits(scores: Tensor, target: Tensor, k: int) -> Tensor:
    k = min(k, scores.shape[-1])
    return (scores.topk(k, dim=-1).indices == target.unsqueeze(-1)).any(dim=-1)


@dataclass
class MetricAccumulator:
    """Sums of hits and losses over batches; ``result()`` gives the split's decoded-output metrics.

    ``available_accuracy`` (the base model alone) is computed once per split by the trainer.
    """

    # Sums stay tensors (on the training device) so that batches never wait on a host sync.
    sums: Dict[str, Tensor] = field(default_factory=dict)
    decoded_count: int = 0
    loss_weight: int = 0

    @torch.no_grad()
    def add(self, loss: Tensor, decoded: Tensor, base_outputs: Tensor, labels: Tensor) -> None:
        """``decoded`` (B, r, k, n); ``base_outputs`` (B, k, n); ``labels`` (B, k)."""
        groups = decoded.shape[0]
        base_pred = base_outputs.argmax(dim=-1).unsqueeze(1).expand(decoded.shape[:-1])
        label = labels.unsqueeze(1).expand(decoded.shape[:-1])
        predicted = decoded.argmax(dim=-1)
        self._add("reconstruction_top1", (predicted == base_pred).sum())
        self._add("reconstruction_top5", _topk_hits(decoded, base_pred, 5).sum())
        self._add("overall_top1", (predicted == label).sum())
        self._add("overall_top5", _topk_hits(decoded, label, 5).sum())
        self._add("loss", loss.detach().float() * groups)
        self.decoded_count += decoded[..., 0].numel()
        self.loss_weight += groups

    def _add(self, name: str, value: Tensor) -> None:
        self.sums[name] = self.sums[name] + value if name in self.sums else value

    def result(self) -> Dict[str, float]:
        if not self.sums:
            return {}
        out = {"loss": float(self.sums["loss"]) / max(self.loss_weight, 1)}
        for name in ("reconstruction_top1", "reconstruction_top5", "overall_top1", "overall_top5"):
            out[name] = float(self.sums[name]) / max(self.decoded_count, 1)
        return out
