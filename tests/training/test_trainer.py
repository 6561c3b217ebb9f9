"""The training core: registry matrix, determinism, exact resume, checkpoints, losses."""

from __future__ import annotations

import json

import pytest
import torch

from parity_ray import UsageError
from parity_ray.coders import create_decoder, create_encoder, list_encoders
from parity_ray.config import TrainConfig
from parity_ray.data import get_dataset_spec, list_datasets, load_data
from parity_ray.losses import create_loss, list_losses
from parity_ray.models import create_model, list_models
from parity_ray.trainer import ParityModels, forward_groups, train

DIGITS = dict(dataset="digits", model="base-mlp", k=2, seed=1, base_epochs=20)


@pytest.mark.parametrize("encoder", list_encoders())
@pytest.mark.parametrize("model", list_models())
@pytest.mark.parametrize("dataset", list_datasets())
def test_one_batch_forward_backward_for_every_dataset_model_coder(dataset, model, encoder, roots):
    """Every registered dataset x model x encoder trains one batch on CPU, end to end."""
    spec = get_dataset_spec(dataset)
    data = load_data(dataset, data_root=roots[dataset], val_size=8, download=False)
    k, r = 2, 1
    base = create_model(model, input_shape=spec.input_shape, num_classes=spec.num_classes).eval()
    with torch.no_grad():
        base_outputs = base(data.train_x[:8])
    parity = ParityModels(lambda: create_model(model, input_shape=spec.input_shape, num_classes=spec.num_classes), r)
    enc = create_encoder(encoder, k=k, r=r, input_shape=spec.input_shape)
    dec = create_decoder("subtraction", k=k, r=r)
    groups = torch.arange(8).view(4, 2)
    loss, batch = forward_groups(groups, data.train_x[:8], base_outputs, data.train_y[:8], enc, parity, dec, create_loss("mse"))
    loss.backward()
    assert batch.decoded.shape == (4, r, k, spec.num_classes)
    grads = [p.grad for p in parity.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


def run(tmp_path, name, **overrides):
    config = TrainConfig.from_dict({**DIGITS, "out": str(tmp_path), "name": name, **overrides})
    return train(config, progress=False, log=lambda _msg: None)


def test_same_config_and_seed_give_identical_metrics(tmp_path):
    a = run(tmp_path, "a", epochs=3)
    b = run(tmp_path, "b", epochs=3)
    assert a.history == b.history
    c = run(tmp_path, "c", epochs=3, seed=2)
    assert [r["loss"] for r in c.history] != [r["loss"] for r in a.history]


def test_resume_continues_at_next_epoch_exactly(tmp_path):
    straight = run(tmp_path, "straight", epochs=4)
    first = run(tmp_path, "resumed", epochs=2)
    assert [r["epoch"] for r in first.history] == [1, 1, 1, 2, 2, 2]
    resumed = run(tmp_path, "resumed", epochs=4)
    assert resumed.history == straight.history  # no duplicated rows, identical numbers
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == straight.history
    assert resumed.summary["degraded_accuracy"] == straight.summary["degraded_accuracy"]


def test_checkpoints_carry_config_seed_and_versions(tmp_path):
    result = run(tmp_path, "ck", epochs=2)
    for name in ("latest.pt", "best.pt"):
        ckpt = torch.load(result.run_dir / "checkpoints" / name, weights_only=False)
        assert ckpt["config"]["k"] == 2 and ckpt["config"]["batch_size"] == 64  # resolved defaults
        assert ckpt["seed"] == 1
        assert ckpt["versions"]["torch"] == torch.__version__ and "ray" in ckpt["versions"]
        assert ckpt["base_model"]["source"] == "trained"
    best = torch.load(result.run_dir / "checkpoints" / "best.pt", weights_only=False)
    assert best["epoch"] == result.summary["best_epoch"]
    record = json.loads((result.run_dir / "config.json").read_text())
    assert record["data"]["split"]["val"] == 300 and record["versions"]["parity_ray"]


def test_base_model_is_trained_once_and_reused(tmp_path):
    cache = tmp_path / "cache"
    first = run(tmp_path, "one", epochs=1, base_cache=str(cache))
    models = list(p for p in cache.iterdir() if p.is_dir())
    assert len(models) == 1 and (models[0] / "model.pt").exists()
    stamp = (models[0] / "model.pt").stat().st_mtime_ns
    second = run(tmp_path, "two", epochs=1, k=3, base_cache=str(cache))
    assert (models[0] / "model.pt").stat().st_mtime_ns == stamp
    assert first.summary["base_model_id"] == second.summary["base_model_id"]
    assert first.summary["available_accuracy"] == second.summary["available_accuracy"] > 0.9


def test_a_different_run_in_the_same_folder_is_refused(tmp_path):
    run(tmp_path, "taken", epochs=1)
    with pytest.raises(UsageError, match=r"holds a different run \(.*k: 2 -> 3"):
        run(tmp_path, "taken", epochs=1, k=3)


@pytest.mark.parametrize("loss", list_losses())
def test_every_loss_learns(tmp_path, loss):
    result = run(tmp_path, f"loss-{loss}", epochs=15, loss=loss)
    assert result.summary["degraded_accuracy"] > 0.3  # chance is 0.1
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in result.history)


def test_r2_trains_two_parity_models(tmp_path):
    result = run(tmp_path, "r2", epochs=15, r=2)
    best = torch.load(result.run_dir / "checkpoints" / "best.pt", weights_only=False)
    assert any(k.startswith("models.1.") for k in best["parity_state"])
    assert result.summary["r"] == 2 and result.summary["degraded_accuracy"] > 0.5


def test_lr_schedule_and_sgd(tmp_path):
    result = run(tmp_path, "sched", epochs=2, optimizer="sgd", lr=0.01, lr_schedule="cosine")
    assert result.summary["epochs"] == 2
