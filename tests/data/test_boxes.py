"""Box helpers for the CUB localisation targets: resizing, IoU, accuracy at IoU >= 0.75, agreement."""

from __future__ import annotations

import math

import pytest
import torch

from parity_ray.boxes import box_agreement, box_iou, localization_metrics, resize_boxes


@pytest.mark.parametrize(
    "a,b,iou",
    [
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),  # identical
        ((0, 0, 10, 10), (5, 0, 10, 10), 50 / 150),  # half overlap
        ((0, 0, 10, 10), (2, 2, 5, 5), 25 / 100),  # contained
        ((0, 0, 10, 10), (10, 0, 10, 10), 0.0),  # touching edges
        ((0, 0, 10, 10), (20, 20, 3, 3), 0.0),  # disjoint
        ((0, 0, 0, 10), (0, 0, 0, 10), 0.0),  # empty boxes
        ((0, 0, 4, 4), (1, 1, -3, 2), 0.0),  # a negative width counts as empty
        ((1.5, 2.5, 4.0, 2.0), (2.5, 2.5, 4.0, 2.0), 6 / 10),
    ],
)
def test_box_iou_cases(a, b, iou):
    got = box_iou(torch.tensor([a], dtype=torch.float32), torch.tensor([b], dtype=torch.float32))
    assert got.shape == (1,) and math.isclose(float(got[0]), iou, rel_tol=1e-6, abs_tol=1e-7)
    # Symmetric.
    assert torch.allclose(got, box_iou(torch.tensor([b], dtype=torch.float32), torch.tensor([a], dtype=torch.float32)))


def test_box_iou_is_elementwise_and_checks_shapes():
    a = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]])
    b = torch.tensor([[0.0, 0, 10, 10], [5, 0, 10, 10]])
    assert torch.allclose(box_iou(a, b), torch.tensor([1.0, 1 / 3]))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        box_iou(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="differ"):
        box_iou(torch.zeros(2, 4), torch.zeros(3, 4))


def test_localization_metrics_and_agreement_use_iou_075():
    true = torch.tensor([[0.0, 0, 10, 10]] * 4)
    # IoU 1, 0.8 (8x10 inside), 0.75 exactly (7.5x10 inside), 0.5 (5x10 inside)
    pred = torch.tensor([[0.0, 0, 10, 10], [0, 0, 8, 10], [0, 0, 7.5, 10], [0, 0, 5, 10]])
    metrics = localization_metrics(pred, true)
    assert metrics["accuracy"] == 0.75
    assert math.isclose(metrics["mean_iou"], (1 + 0.8 + 0.75 + 0.5) / 4, rel_tol=1e-6)
    assert box_agreement(pred, true) == 0.75
    assert math.isnan(localization_metrics(torch.zeros(0, 4), torch.zeros(0, 4))["accuracy"])


def test_resize_boxes_scales_x_and_width_by_the_width_ratio():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 40.0]], dtype=torch.float64)
    sizes = torch.tensor([[448, 112]])  # width 448 -> 224 halves x and w; height 112 -> 224 doubles y and h
    assert torch.equal(resize_boxes(boxes, sizes, 224), torch.tensor([[5.0, 40.0, 15.0, 80.0]], dtype=torch.float64))
