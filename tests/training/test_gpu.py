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


CODES_ON_GPU = {  # every code family, the worker trained or F, r = 1 and r = 2
    "addition": dict(encoder="addition", decoder="subtraction"),
    "addition-r2": dict(encoder="addition", decoder="subtraction", r=2),
    "concatenation": dict(encoder="concatenation", decoder="subtraction"),
    "berrut-F": dict(encoder="berrut", decoder="berrut", epochs=0),
    "berrut-trained": dict(encoder="berrut", decoder="berrut", systematic=True, loss="kl"),
    "berrut-byzantine": dict(encoder="berrut", decoder="berrut", epochs=0, r=2, byzantine=1),
    "learned": dict(encoder="mlp", decoder="mlp", parity_model="base", loss="kl"),
    "ema-augment": dict(encoder="addition", decoder="subtraction", ema_decay=0.9, augment="crop-flip"),
}


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(CODES_ON_GPU))
def test_every_code_family_trains_and_is_scored_on_cuda(tmp_path, name):
    """Every family end to end on the GPU: training, every erasure pattern, predictions (no CPU/GPU mix-ups)."""
    config = {"dataset": "digits", "model": "lenet5", "k": 2, "base_epochs": 2, "epochs": 1, "max_train_batches": 3,
              "device": "cuda", "out": str(tmp_path), **CODES_ON_GPU[name]}
    result = train(TrainConfig.from_dict(config), progress=False, log=lambda _m: None)
    assert result.summary["device"].startswith("cuda")
    assert 0.0 <= result.summary["degraded_accuracy"] <= 1.0
    assert (result.run_dir / "predictions.parquet").exists()
