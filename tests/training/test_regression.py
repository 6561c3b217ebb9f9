"""Box regression (CUB-200 localisation) end to end on tiny files in the CUB_200_2011 layout."""

from __future__ import annotations

import pytest
import torch

from parity_ray import UsageError
from parity_ray.boxes import box_iou
from parity_ray.config import TrainConfig
from parity_ray.data import load_data
from parity_ray.metrics import MetricAccumulator
from parity_ray.pipeline import build_code
from parity_ray.tasks import last_linear
from parity_ray.trainer import train
from tests.conftest import write_cub

CUB = dict(dataset="cub-localization", model="tv-resnet18", k=2, val_size=2, base_epochs=1, epochs=1,
           batch_size=2, eval_batch_size=8, device="cpu", num_threads=1, download=False)


@pytest.fixture(scope="module")
def cub12(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("cub12")
    write_cub(root, n_images=12)
    return str(root)


def test_box_metrics_score_iou_against_true_and_base_boxes():
    true = torch.tensor([[10.0, 10.0, 100.0, 100.0]])
    base = torch.tensor([[10.0, 10.0, 100.0, 100.0]])
    near = torch.tensor([[12.0, 12.0, 100.0, 100.0]])  # IoU ~0.92
    far = torch.tensor([[60.0, 60.0, 100.0, 100.0]])  # IoU ~0.14
    decoded = torch.stack([near, far], dim=1).view(1, 1, 2, 4)  # (B, P, k, 4)
    labels, base_outputs = true.expand(2, 4).unsqueeze(0), base.expand(2, 4).unsqueeze(0)
    metrics = MetricAccumulator(task="regression")
    rebuilt = torch.tensor([[True, True]])
    metrics.add_patterns(1, decoded, rebuilt, base_outputs, labels)
    result = metrics.result()
    assert result["overall_top1"] == 0.5 and result["degraded_accuracy_e1"] == 0.5
    assert result["reconstruction_top1"] == 0.5
    assert result["mean_iou"] == pytest.approx(float(box_iou(torch.cat([near, far]), true.expand(2, 4)).mean()))
    assert "overall_top5" not in result and "reconstruction_top5" not in result


@pytest.mark.slow  # 42 s on a loaded machine: decodes the JPEGs, builds three ResNet-18s
def test_parity_model_last_bias_starts_at_k_times_the_mean_training_box(cub12):
    config = TrainConfig.from_dict({**CUB, "data_root": cub12, "k": 3}).validate().resolved()
    data = load_data("cub-localization", data_root=cub12, val_size=2, download=False)
    base = torch.nn.Linear(1, 1)  # unused: parity models are built from the architecture
    code = build_code(config, data.spec, base, "cpu", train_targets=data.train_y)
    bias = last_linear(code.workers.models[0]).bias
    assert torch.allclose(bias, 3 * data.train_y.float().mean(0), atol=1e-4)


def test_regression_losses_other_than_mse_are_refused(cub12):
    with pytest.raises(UsageError, match="regresses boxes"):
        TrainConfig.from_dict({**CUB, "data_root": cub12, "loss": "kl"}).validate()


@pytest.mark.slow
def test_a_cub_run_trains_scores_boxes_and_writes_box_predictions(cub12, tmp_path):
    import pandas as pd

    result = train(TrainConfig.from_dict({**CUB, "data_root": cub12, "out": str(tmp_path), "name": "boxes"}),
                   progress=False, log=lambda _m: None)
    summary = result.summary
    assert summary["task"] == "regression"
    assert 0.0 <= summary["degraded_accuracy"] <= 1.0 and 0.0 <= summary["degraded_mean_iou"] <= 1.0
    assert summary["degraded_top5"] is None
    test_rows = [r for r in result.history if r["split"] == "test"]
    assert all("mean_iou" in r and "reconstruction_mean_iou" in r and "overall_top5" not in r for r in test_rows)
    frame = pd.read_parquet(result.run_dir / "predictions.parquet")
    assert {"true_box", "base_box", "decoded_box", "iou_decoded_true", "iou_base_true", "iou_decoded_base"} <= set(frame.columns)
    assert not {"label", "base_top5", "decoded_top5", "kl_base_decoded"} & set(frame.columns)
    assert len(frame["decoded_box"].iloc[0]) == 4
    # the IoU columns are the IoUs of the box columns
    row = frame.iloc[0]
    iou = box_iou(torch.tensor([list(row["decoded_box"])]), torch.tensor([list(row["true_box"])]))
    assert float(iou) == pytest.approx(float(row["iou_decoded_true"]), abs=1e-5)
