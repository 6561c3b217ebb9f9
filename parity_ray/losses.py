"""Loss registry. Every loss sees the same :class:`LossInputs` and returns a scalar.

* ``mse`` — the paper's: parity output vs the coded target (e.g. the sum of the k base outputs).
* ``kl`` — distillation: KL(base softmax || softmax of the decoded output), per erased position.
* ``ce`` — cross-entropy of the decoded output against the true labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List

import torch
import torch.nn.functional as F

from .registry import Registry, Spec

Tensor = torch.Tensor


@dataclass
class LossInputs:
    parity_outputs: Tensor  # (B, r, n) what the parity models returned
    parity_targets: Tensor  # (B, r, n) what the decoder expects them to return
    decoded: Tensor  # (B, r, k, n) each position rebuilt from each parity, all else available
    base_outputs: Tensor  # (B, k, n) the frozen base model's outputs
    labels: Tensor  # (B, k) true labels


LossFn = Callable[[LossInputs], Tensor]

LOSSES: Registry = Registry("loss")
register_loss = LOSSES.register


def list_losses() -> List[str]:
    return LOSSES.names()


def create_loss(spec: Spec) -> LossFn:
    return LOSSES.create(spec)


@register_loss("mse")
class MSELoss:
    def __call__(self, batch: LossInputs) -> Tensor:
        return F.mse_loss(batch.parity_outputs, batch.parity_targets)


@register_loss("kl")
class KLLoss:
    def __init__(self, temperature: float = 1.0):
        self.temperature = temperature

    def __call__(self, batch: LossInputs) -> Tensor:
        t = self.temperature
        teacher = F.softmax(batch.base_outputs / t, dim=-1).unsqueeze(1).expand_as(batch.decoded)
        student = F.log_softmax(batch.decoded / t, dim=-1)
        n = batch.decoded.shape[-1]
        return F.kl_div(student.reshape(-1, n), teacher.reshape(-1, n), reduction="batchmean") * t * t


@register_loss("ce")
class CrossEntropyLoss:
    def __call__(self, batch: LossInputs) -> Tensor:
        n = batch.decoded.shape[-1]
        labels = batch.labels.unsqueeze(1).expand(batch.decoded.shape[:-1])
        return F.cross_entropy(batch.decoded.reshape(-1, n), labels.reshape(-1))


__all__ = ["LOSSES", "LossInputs", "create_loss", "list_losses", "register_loss"]
