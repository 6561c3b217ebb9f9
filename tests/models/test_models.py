"""Base-model registry, class-specs, and import of foreign weights."""

from __future__ import annotations

import pytest
import torch

from parity_ray import UsageError
from parity_ray.base import accuracy, compute_outputs
from parity_ray.data import get_dataset_spec, list_datasets, load_data
from parity_ray.models import create_model, list_models, load_weights


class ForeignMLP(torch.nn.Module):
    """A user's own class, shaped like the published artifact (attribute ``nn``)."""

    def __init__(self, hidden=(200, 100), classes=10):
        super().__init__()
        self.nn = torch.nn.Sequential(
            torch.nn.Linear(784, hidden[0]),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden[0], hidden[1]),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden[1], classes),
        )

    def forward(self, x):
        return self.nn(x.view(x.shape[0], -1))


@pytest.mark.parametrize("dataset", list_datasets())
@pytest.mark.parametrize("model", list_models())
def test_every_model_builds_for_every_dataset_shape(model, dataset):
    spec = get_dataset_spec(dataset)
    net = create_model(model, input_shape=spec.input_shape, num_classes=spec.num_classes)
    out = net(torch.randn(3, *spec.input_shape))
    assert out.shape == (3, spec.num_classes)


@pytest.mark.parametrize("spec", ["base-mlp", {"cls": "tests.models.test_models.ForeignMLP"}])
def test_foreign_checkpoint_reproduces_published_accuracy(spec, foreign_mlp, data_root):
    """The 2019 artifact: 9793/10000 on the MNIST test set, pixels in [0, 1]."""
    data = load_data("mnist", data_root=data_root, input_norm="none")
    model = create_model(spec, input_shape=(1, 28, 28), num_classes=10)
    load_weights(model, foreign_mlp, "foreign")
    outputs = compute_outputs(model, data.test_x)
    assert int((outputs.argmax(1) == data.test_y).sum()) == 9793
    assert accuracy(outputs, data.test_y) == 0.9793


def test_class_spec_kwargs_reach_the_constructor():
    model = create_model({"cls": "tests.models.test_models.ForeignMLP", "hidden": [32, 16]}, input_shape=(1, 28, 28), num_classes=10)
    assert model.nn[0].out_features == 32


def test_class_spec_errors_are_usage_errors():
    with pytest.raises(UsageError, match="cannot import module"):
        create_model({"cls": "no_such_pkg.Net"}, input_shape=(1, 28, 28), num_classes=10)
    with pytest.raises(UsageError, match="has no attribute"):
        create_model({"cls": "torch.nn.NoSuchNet"}, input_shape=(1, 28, 28), num_classes=10)
    with pytest.raises(UsageError, match="does not take"):
        create_model({"cls": "tests.models.test_models.ForeignMLP", "depth": 3}, input_shape=(1, 28, 28), num_classes=10)
    with pytest.raises(UsageError, match="unknown model 'resnet-18'.*did you mean 'resnet18'"):
        create_model("resnet-18", input_shape=(1, 28, 28), num_classes=10)


def test_mismatched_weights_name_the_keys(foreign_mlp):
    lenet = create_model("lenet5", input_shape=(1, 28, 28), num_classes=10)
    with pytest.raises(UsageError, match="does not match model 'lenet5'.*missing keys"):
        load_weights(lenet, foreign_mlp, "lenet5")
    wide = create_model("base-mlp", input_shape=(1, 28, 28), num_classes=100)
    with pytest.raises(UsageError, match=r"shape mismatch \[nn.4.weight \(10, 100\) vs \(100, 100\)"):
        load_weights(wide, foreign_mlp, "base-mlp")


def test_corrupt_weights_file_is_a_usage_error(tmp_path):
    bad = tmp_path / "model.t7"
    bad.write_bytes(b"\x00garbage" * 100)
    model = create_model("base-mlp", input_shape=(1, 28, 28), num_classes=10)
    with pytest.raises(UsageError, match="not a readable PyTorch state_dict"):
        load_weights(model, str(bad), "base-mlp")


def test_weights_saved_on_another_device_layout_and_wrapped_load(tmp_path):
    """DataParallel prefixes and {'state_dict': ...} wrappers are common in the wild."""
    source = create_model("base-mlp", input_shape=(1, 8, 8), num_classes=10)
    wrapped = {"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}, "epoch": 3}
    torch.save(wrapped, tmp_path / "w.pt")
    target = create_model("base-mlp", input_shape=(1, 8, 8), num_classes=10)
    load_weights(target, str(tmp_path / "w.pt"), "base-mlp")
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(source(x), target(x))
