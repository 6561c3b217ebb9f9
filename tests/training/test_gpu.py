"""On a GPU the trainer keeps whole datasets and base outputs on the device (no DataLoader, no host copies)."""

from __future__ import annotations

import pytest
import torch

from parity_ray.config import TrainConfig
from parity_ray.data import load_data
from parity_ray.trainer import train


@pytest.mark.gpu
def test_training_on_cuda_keeps_the_data_on_the_device(tmp_path, monkeypatch):
    seen = {}
    import parity_ray.trainer as trainer

    original = trainer.train_one_epoch

    def spy(config, epoch, data, base_outputs, *rest):
        seen["x"], seen["outputs"] = data.train_x.device, base_outputs["train"].device
        return original(config, epoch, data, base_outputs, *rest)

    monkeypatch.setattr(trainer, "train_one_epoch", spy)
    monkeypatch.setattr(torch.utils.data, "DataLoader", None)  # the trainer must not need one
    result = train(TrainConfig.from_dict({"dataset": "digits", "model": "base-mlp", "k": 2, "base_epochs": 3, "epochs": 2,
                                          "device": "cuda", "out": str(tmp_path)}), progress=False, log=lambda _m: None)
    assert seen["x"].type == "cuda" and seen["outputs"].type == "cuda"
    assert result.summary["device"].startswith("cuda") and result.summary["degraded_accuracy"] > 0.2
    assert load_data("digits", device=torch.device("cuda")).train_x.is_cuda
