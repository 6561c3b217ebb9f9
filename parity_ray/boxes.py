"""Bounding boxes as ``(x, y, w, h)`` rows: resizing, IoU, and the localisation metrics.

Pure tensor functions (no model, no trainer) for the CUB-200 localisation task: accuracy is
the share of predicted boxes whose IoU with the true box is at least 0.75, as the parity-models
artifact scored it; the mean IoU is reported beside it.
"""

from __future__ import annotations

from typing import Dict

import torch

Tensor = torch.Tensor

IOU_THRESHOLD = 0.75


def _check(boxes: Tensor, name: str) -> Tensor:
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) as (x, y, w, h), got {tuple(boxes.shape)}")
    return boxes


def resize_boxes(boxes: Tensor, sizes: Tensor, size: int) -> Tensor:
    """Boxes of images of ``sizes`` (N, 2) as (width, height) in the ``size`` x ``size`` resized frame."""
    _check(boxes, "boxes")
    scale = size / sizes.to(boxes.dtype if boxes.is_floating_point() else torch.float64)
    sx, sy = scale[:, 0], scale[:, 1]
    return boxes * torch.stack([sx, sy, sx, sy], dim=1)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Elementwise intersection over union of two (N, 4) ``(x, y, w, h)`` tensors -> (N,).

    Negative widths or heights count as empty boxes; two empty boxes have IoU 0.
    """
    _check(a, "a")
    _check(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"box_iou compares boxes pairwise: shapes {tuple(a.shape)} and {tuple(b.shape)} differ")
    a, b = a.float(), b.float()
    aw, ah = a[:, 2].clamp(min=0), a[:, 3].clamp(min=0)
    bw, bh = b[:, 2].clamp(min=0), b[:, 3].clamp(min=0)
    left = torch.maximum(a[:, 0], b[:, 0])
    top = torch.maximum(a[:, 1], b[:, 1])
    right = torch.minimum(a[:, 0] + aw, b[:, 0] + bw)
    bottom = torch.minimum(a[:, 1] + ah, b[:, 1] + bh)
    inter = (right - left).clamp(min=0) * (bottom - top).clamp(min=0)
    union = aw * ah + bw * bh - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(union))


def localization_metrics(pred_boxes: Tensor, true_boxes: Tensor, threshold: float = IOU_THRESHOLD) -> Dict[str, float]:
    """``accuracy`` (share of IoU >= ``threshold``) and ``mean_iou`` of predicted vs true boxes."""
    iou = box_iou(pred_boxes, true_boxes)
    if len(iou) == 0:
        return {"accuracy": float("nan"), "mean_iou": float("nan")}
    return {"accuracy": float((iou >= threshold).float().mean()), "mean_iou": float(iou.mean())}


def box_agreement(decoded_boxes: Tensor, base_boxes: Tensor, threshold: float = IOU_THRESHOLD) -> float:
    """Share of decoded boxes whose IoU with the base model's own box is >= ``threshold``.

    The regression counterpart of reconstruction top-1: how often the decoded output stands in
    for the unavailable base output.
    """
    iou = box_iou(decoded_boxes, base_boxes)
    return float((iou >= threshold).float().mean()) if len(iou) else float("nan")


__all__ = ["IOU_THRESHOLD", "box_agreement", "box_iou", "localization_metrics", "resize_boxes"]
