"""Loss registry. Every loss sees the same :class:`LossInputs` and returns a scalar.

* ``mse`` — the paper's: each coded worker's output vs what the decoder expects it to return (e.g.
  the sum of the k base outputs) when the code defines that; otherwise (learned and Berrut codes)
  the rebuilt outputs vs the base outputs.
* ``kl`` — distillation: KL(base softmax || softmax of the rebuilt output), on rebuilt slots.
* ``ce`` — cross-entropy of the rebuilt output against the true labels, on rebuilt slots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional

import torch
import torch.nn.functional as F

from .registry import Registry, Spec

Tensor = torch.Tensor


@dataclass
class LossInputs:
    parity_outputs: Tensor  # (B, m, n) what the workers on the m coded queries returned
    parity_targets: Optional[Tensor]  # (B, m, n) what the decoder expects them to return; None if undefined
    decoded: Tensor  # (B, P, k, n) the decoder's estimates under P erasure patterns per group
    rebuilt: Tensor  # (B, P, k) bool: the slots each pattern made the decoder rebuild (losses on decoded outputs use these)
    base_outputs: Tensor  # (B, k, n) the frozen base model's outputs
    labels: Tensor  # (B, k) true labels

    def rebuilt_pairs(self):
        """``(decoded, base_outputs, labels)`` of the rebuilt slots only: (N, n), (N, n), (N,)."""
        mask = self.rebuilt
        base = self.base_outputs.unsqueeze(1).expand_as(self.decoded)
        labels = self.labels.unsqueeze(1).expand(mask.shape)
        return self.decoded[mask], base[mask], labels[mask]


LossFn = Callable[[LossInputs], Tensor]

LOSSES: Registry = Registry("loss", "losses", """
    A class (or class-spec) built with no arguments whose instance is called with one
    :class:`LossInputs` and returns a scalar tensor to minimise. ``needs_classes`` (default False)
    says it reads class scores or labels, so box-regression tasks refuse it; ``units`` names what
    its value measures, for plots.""")
register_loss = LOSSES.register


def list_losses() -> List[str]:
    return LOSSES.names()


def loss_units(name: str) -> str:
    """What a registered loss's value measures (for axis labels); "loss units" when unknown."""
    return getattr(LOSSES.get(name), "units", "loss units") if name in LOSSES else "loss units"


def create_loss(spec: Spec) -> LossFn:
    return LOSSES.create(spec)


@register_loss("mse")
class MSELoss:
    units = "squared error"

    def __call__(self, batch: LossInputs) -> Tensor:
        if batch.parity_targets is not None:
            return F.mse_loss(batch.parity_outputs, batch.parity_targets)
        decoded, base, _ = batch.rebuilt_pairs()
        return F.mse_loss(decoded, base)


@register_loss("kl")
class KLLoss:
    needs_classes, units = True, "nats"

    def __init__(self, temperature: float = 1.0):
        self.temperature = temperature

    def __call__(self, batch: LossInputs) -> Tensor:
        t = self.temperature
        decoded, base, _ = batch.rebuilt_pairs()
        teacher = F.softmax(base / t, dim=-1)
        student = F.log_softmax(decoded / t, dim=-1)
        return F.kl_div(student, teacher, reduction="batchmean") * t * t


@register_loss("ce")
class CrossEntropyLoss:
    needs_classes, units = True, "nats"

    def __call__(self, batch: LossInputs) -> Tensor:
        decoded, _, labels = batch.rebuilt_pairs()
        return F.cross_entropy(decoded, labels)


__all__ = ["LOSSES", "LossInputs", "create_loss", "list_losses", "register_loss"]
