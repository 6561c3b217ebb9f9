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


# CIFAR-stem ResNets keep full resolution through their first stage: on 224 x 224 or 161 x 101
# inputs a CPU forward takes minutes (ResNet-152), so their shapes are checked on the meta device.
FULL_RESOLUTION_STEMS = {"resnet18", "resnet152"}


@pytest.mark.parametrize("dataset", list_datasets())
@pytest.mark.parametrize("model", list_models())
def test_every_model_builds_for_every_dataset_shape(model, dataset):
    spec = get_dataset_spec(dataset)
    large = spec.input_shape[1] * spec.input_shape[2] > 64 * 64
    device = torch.device("meta") if large and model in FULL_RESOLUTION_STEMS else torch.device("cpu")
    with device, torch.no_grad():
        net = create_model(model, input_shape=spec.input_shape, num_classes=spec.num_classes)
        out = net(torch.randn(3, *spec.input_shape))
    assert out.shape == (3, spec.num_classes)


@pytest.mark.parametrize("model", list_models())
def test_every_model_states_its_cost(model):
    """Parameters and FLOPs per query on the meta device (what the runs table's parity_params and
    parity_flops hold): the parameters are the built model's own, and more pixels cost more FLOPs."""
    from parity_ray.models import model_cost

    small = model_cost(model, input_shape=(1, 28, 28), num_classes=10)
    large = model_cost(model, input_shape=(1, 56, 56), num_classes=10)
    assert small is not None and small.params > 0 and small.flops > 0
    with torch.device("meta"):
        assert small.params == sum(p.numel() for p in create_model(model, input_shape=(1, 28, 28), num_classes=10).parameters())
    assert large.flops > small.flops


def test_a_class_spec_is_never_imported_to_state_its_cost():
    """A stored config naming user code (here a module whose import would run) gets no cost, not an import."""
    import sys

    from parity_ray.models import model_cost

    assert model_cost({"cls": "tests_never_imported_module.Model"}, input_shape=(1, 28, 28), num_classes=10) is None
    assert "tests_never_imported_module" not in sys.modules


def test_vgg11_is_the_speech_model_and_adapts_to_other_sizes():
    net = create_model("vgg11", input_shape=(1, 161, 101), num_classes=30)
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 256, 512, 512, 512, 512]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.features) == 8
    assert net.classifier[0].in_features == 512 * 5 * 3  # 161 x 101 after five 2x2 max-pools
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(2, 1, 161, 101)).shape == (2, 30)
        assert net(torch.randn(2, 1, 100, 80)).shape == (2, 30)  # the adaptive pool takes other sizes
    rgb = create_model("vgg11", input_shape=(3, 32, 32), num_classes=10)
    assert rgb.features[0].in_channels == 3 and rgb.classifier[0].in_features == 512


def test_tv_resnet18_is_torchvisions_with_the_imagenet_stem():
    import torchvision

    net = create_model("tv-resnet18", input_shape=(3, 224, 224), num_classes=2)
    assert isinstance(net, torchvision.models.ResNet)
    assert net.conv1.kernel_size == (7, 7) and net.conv1.stride == (2, 2)
    assert isinstance(net.maxpool, torch.nn.MaxPool2d) and net.fc.out_features == 2
    reference = torchvision.models.resnet18(weights=None, num_classes=2)
    assert {k: v.shape for k, v in net.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    box = create_model("tv-resnet18", input_shape=(3, 224, 224), num_classes=get_dataset_spec("cub-localization").num_classes)
    box.eval()
    with torch.no_grad():
        assert box(torch.randn(1, 3, 224, 224)).shape == (1, 4)  # the CUB box regressor
    gray = create_model("tv-resnet18", input_shape=(1, 161, 101), num_classes=30)
    assert gray.conv1.in_channels == 1


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
