"""Tasks: what a dataset asks of the deployed model F, and how every answer is scored (a registry).

A dataset names its task (``DatasetSpec.task``); everything that depends on what an output *is*
asks the task instead of comparing names: how F is trained and scored on its own, the bar a
rebuilt answer must clear, the coded metrics, the per-instance prediction columns, which losses
and augmentations make sense. Built in:

* ``classification`` - outputs are class scores; a hit is the top-1 class equal to the label.
* ``regression`` - box localisation (CUB-200): outputs are boxes ``(x, y, w, h)`` in pixels and a
  hit is an IoU >= 0.75 with the true box (the parity-models artifact's measure); ``mean_iou``
  is recorded beside the accuracies. Top-5 does not apply.

The report's explorer draws each task's rows with the payload registered under the task's name
in ``analysis.explorer`` (the analysis floor sits above this one).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .errors import UsageError
from .registry import Registry, spec_name

Tensor = torch.Tensor

TASKS: Registry = Registry("task", "tasks", """
    A :class:`Task` subclass, instantiated once at registration. The trainer, the base-model
    trainer, the metrics and the config checks call its methods: ``accuracy(outputs, labels)`` ->
    float, ``base_rate(labels)`` -> float or None, ``base_loss(outputs, labels)`` -> scalar,
    ``prepare_output_layer(model, targets)``, ``prepare_workers(models, decoder, targets, k)``,
    ``add_rebuilt(...)``/``add_patterns(...)`` on a
    metric accumulator, ``prediction_columns(decoded, base, labels)`` -> column dict, and
    ``check_config(config)`` raising :class:`UsageError`.""")


def register_task(name: str):
    """Class decorator: register an instance of the :class:`Task` subclass under ``name``."""

    def decorator(cls):
        TASKS.register(name)(cls())
        return cls

    return decorator


def get_task(name: str) -> "Task":
    return TASKS.get(name)


def list_tasks() -> List[str]:
    return TASKS.in_order()


def last_linear(model: nn.Module) -> Optional[nn.Linear]:
    """The model's output layer: its last ``nn.Linear`` in registration order."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return layers[-1] if layers else None


class Task:
    """What outputs mean and how they are scored. Subclasses override what differs."""

    registry_name = "task"
    has_classes = True  # outputs are class scores (losses on classes, top-5, Byzantine scoring apply)
    targets_move_with_pixels = False  # an augmentation that moves pixels would move the targets too
    base_weight_decay: Optional[float] = None  # F's own training; None = the base recipe's

    # ---- F alone
    def accuracy(self, outputs: Tensor, labels: Tensor) -> float:
        raise NotImplementedError

    def base_rate(self, labels: Tensor) -> Optional[float]:
        """The accuracy of a constant answer, the bar a rebuilt answer must clear (None: no such bar)."""
        return None

    def base_loss(self, outputs: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError

    def prepare_output_layer(self, model: nn.Module, targets: Tensor) -> None:
        """Start a freshly built model's output layer where training should start (default: as built)."""

    def prepare_workers(self, models: List[nn.Module], decoder: nn.Module, targets: Tensor, k: int) -> None:
        """Start freshly initialised parity models' output layers where training should start (default: as built)."""

    # ---- the code's metrics (``acc`` is a ``metrics.MetricAccumulator``)
    def add_rebuilt(self, acc, decoded: Tensor, mask: Tensor, base_outputs: Tensor, labels: Tensor, prefix: str) -> None:
        raise NotImplementedError

    def add_patterns(self, acc, e: int, decoded: Tensor, mask: Tensor, base_outputs: Tensor, labels: Tensor) -> None:
        raise NotImplementedError

    # ---- per-instance predictions
    def prediction_columns(self, decoded: Tensor, base: Tensor, labels: Tensor) -> Dict[str, Any]:
        raise NotImplementedError

    # ---- configs
    def check_config(self, config) -> None:
        """Raise :class:`UsageError` for a config this task cannot run."""


def _topk_hits(scores: Tensor, target: Tensor, k: int) -> Tensor:
    k = min(k, scores.shape[-1])
    return (scores.topk(k, dim=-1).indices == target.unsqueeze(-1)).any(dim=-1)


PREDICTION_TOPK = 5


@register_task("classification")
class Classification(Task):
    """Class scores; a hit is the top-1 class equal to the label."""

    def accuracy(self, outputs: Tensor, labels: Tensor) -> float:
        return int((outputs.argmax(dim=1) == labels).sum()) / len(labels)

    def base_rate(self, labels: Tensor) -> Optional[float]:
        """Always answering the most frequent class."""
        if labels.numel() == 0:
            return None
        return float(torch.bincount(labels.flatten().long()).max()) / labels.numel()

    def base_loss(self, outputs: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(outputs, labels)

    def add_rebuilt(self, acc, decoded, mask, base_outputs, labels, prefix):
        scores = decoded[mask]
        base_pred = base_outputs.argmax(dim=-1).unsqueeze(1).expand(mask.shape)[mask]
        label = labels.unsqueeze(1).expand(mask.shape)[mask]
        count = scores.shape[0]
        acc.add(prefix + "reconstruction_top1", scores.argmax(-1) == base_pred, count)
        acc.add(prefix + "reconstruction_top5", _topk_hits(scores, base_pred, 5), count)
        acc.add(prefix + "overall_top1", scores.argmax(-1) == label, count)
        acc.add(prefix + "overall_top5", _topk_hits(scores, label, 5), count)

    def add_patterns(self, acc, e, decoded, mask, base_outputs, labels):
        predicted = decoded.argmax(dim=-1)
        label = labels.unsqueeze(1).expand(mask.shape)
        base_pred = base_outputs.argmax(dim=-1).unsqueeze(1).expand(mask.shape)
        served = torch.where(mask, predicted, base_pred)  # what the client receives
        acc.add(f"degraded_accuracy_e{e}", (predicted == label)[mask], int(mask.sum()))
        acc.add(f"reconstruction_top1_e{e}", (predicted == base_pred)[mask], int(mask.sum()))
        acc.add(f"all_accuracy_e{e}", served == label, served.numel())

    def prediction_columns(self, decoded, base, labels):
        """Labels, top-1 predictions and probabilities, top-5, and KL(base || decoded)."""
        base_logp, dec_logp = torch.log_softmax(base, -1), torch.log_softmax(decoded, -1)
        kl = (base_logp.exp() * (base_logp - dec_logp)).sum(-1)
        top = min(PREDICTION_TOPK, base.shape[-1])
        base_top, dec_top = base_logp.topk(top, -1), dec_logp.topk(top, -1)
        return {
            "label": labels.cpu().numpy().astype("int64"),
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


@register_task("regression")
class BoxRegression(Task):
    """Boxes ``(x, y, w, h)``; a hit is an IoU >= 0.75 with the true box."""

    has_classes = False
    targets_move_with_pixels = True
    base_weight_decay = 1e-5  # the artifact's box regressor: MSE, Adam lr 1e-3, weight decay 1e-5

    def accuracy(self, outputs: Tensor, labels: Tensor) -> float:
        from .boxes import localization_metrics

        return localization_metrics(outputs, labels)["accuracy"]

    def base_loss(self, outputs: Tensor, labels: Tensor) -> Tensor:
        return F.mse_loss(outputs, labels)

    @torch.no_grad()
    def prepare_output_layer(self, model: nn.Module, targets: Tensor) -> None:
        """The output bias starts at the mean training box (boxes are in pixels), so training does
        not first have to learn a large constant offset."""
        layer = last_linear(model)
        mean = targets.float().mean(0)
        if layer is not None and layer.bias is not None and layer.bias.shape == mean.shape:
            layer.bias.copy_(mean.to(layer.bias.device, layer.bias.dtype))

    @torch.no_grad()
    def prepare_workers(self, models: List[nn.Module], decoder: nn.Module, targets: Tensor, k: int) -> None:
        """Each parity model's last bias starts at what its decoder expects for k mean training boxes.

        For the subtraction decoder (the sum of the k outputs) that is k times the mean training box,
        as the parity-models artifact initialised its localisation parity models; it spares the model
        learning a large constant offset first.
        """
        mean = targets.float().mean(0).cpu()
        expected = decoder.target(mean.view(1, 1, -1).expand(1, k, -1)) if hasattr(decoder, "target") else None
        for j, model in enumerate(models):
            layer = last_linear(model)
            if layer is None or layer.bias is None:
                continue
            value = expected[0, j] if expected is not None and j < expected.shape[1] else k * mean
            if value.shape == layer.bias.shape:
                layer.bias.copy_(value.to(layer.bias.device, layer.bias.dtype))

    def add_rebuilt(self, acc, decoded, mask, base_outputs, labels, prefix):
        from .boxes import IOU_THRESHOLD, box_iou

        boxes = decoded[mask]
        base = base_outputs.unsqueeze(1).expand(decoded.shape)[mask]
        true = labels.unsqueeze(1).expand(decoded.shape)[mask]
        iou_true, iou_base = box_iou(boxes, true), box_iou(boxes, base)
        count = boxes.shape[0]
        acc.add(prefix + "overall_top1", iou_true >= IOU_THRESHOLD, count)
        acc.add(prefix + "reconstruction_top1", iou_base >= IOU_THRESHOLD, count)
        acc.add(prefix + "mean_iou", iou_true.sum(), count)
        acc.add(prefix + "reconstruction_mean_iou", iou_base.sum(), count)

    def add_patterns(self, acc, e, decoded, mask, base_outputs, labels):
        from .boxes import IOU_THRESHOLD, box_iou

        shape = decoded.shape
        true = labels.unsqueeze(1).expand(shape)
        base = base_outputs.unsqueeze(1).expand(shape)
        iou_true = box_iou(decoded.reshape(-1, 4), true.reshape(-1, 4)).view(shape[:-1])
        iou_base = box_iou(decoded.reshape(-1, 4), base.reshape(-1, 4)).view(shape[:-1])
        base_true = box_iou(base.reshape(-1, 4), true.reshape(-1, 4)).view(shape[:-1])
        served = torch.where(mask, iou_true, base_true)  # the box the client receives, against the true box
        rebuilt = int(mask.sum())
        acc.add(f"degraded_accuracy_e{e}", (iou_true >= IOU_THRESHOLD)[mask], rebuilt)
        acc.add(f"reconstruction_top1_e{e}", (iou_base >= IOU_THRESHOLD)[mask], rebuilt)
        acc.add(f"all_accuracy_e{e}", served >= IOU_THRESHOLD, served.numel())

    def prediction_columns(self, decoded, base, labels):
        """The true, base and decoded boxes ``[x, y, w, h]`` and their pairwise IoUs (no class columns)."""
        from .boxes import box_iou

        def boxes(t: Tensor):
            return list(t.detach().float().cpu().numpy().astype("float32"))

        return {
            "true_box": boxes(labels),
            "base_box": boxes(base),
            "decoded_box": boxes(decoded),
            "iou_decoded_true": box_iou(decoded, labels).cpu().numpy().astype("float32"),
            "iou_base_true": box_iou(base, labels).cpu().numpy().astype("float32"),
            "iou_decoded_base": box_iou(decoded, base).cpu().numpy().astype("float32"),
        }

    def check_config(self, config) -> None:
        from .losses import LOSSES

        loss = spec_name(config.loss)
        if loss in LOSSES and getattr(LOSSES.get(loss), "needs_classes", False):
            raise UsageError(f"loss '{loss}' needs class outputs; '{config.dataset}' regresses boxes: "
                             f"use one of {', '.join(n for n in LOSSES.in_order() if not getattr(LOSSES.get(n), 'needs_classes', False))}")
        if config.byzantine:
            raise UsageError(f"byzantine scoring compares classes; '{config.dataset}' regresses boxes: use byzantine 0")


__all__ = ["TASKS", "Task", "get_task", "last_linear", "list_tasks", "register_task"]
