"""Training-time augmentation: every registered augmentation, and targets recomputed on the augmented inputs."""

from __future__ import annotations

import json

import pytest
import torch

from parity_ray import UsageError
from parity_ray.augment import black_level, crop_flip, get_augmentation, list_augmentations
from parity_ray.base import compute_outputs
from parity_ray.config import TrainConfig
from parity_ray.data import load_data
from parity_ray.models import create_model
from parity_ray.trainer import make_augmenter, random_groups, train, training_batch

MOVING = [name for name in list_augmentations() if name != "none"]


def cifar_batch(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", list_augmentations())
def test_every_augmentation_keeps_the_shape_and_is_fixed_by_its_generator(name):
    images = cifar_batch()
    augment = get_augmentation(name)
    if augment is None:
        assert name == "none"
        return
    first = augment(images, torch.Generator().manual_seed(3), [0.0, 0.0, 0.0])
    again = augment(images, torch.Generator().manual_seed(3), [0.0, 0.0, 0.0])
    other = augment(images, torch.Generator().manual_seed(4), [0.0, 0.0, 0.0])
    assert first.shape == images.shape and first.dtype == images.dtype
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.equal(first, images)


def test_crop_flip_is_a_window_of_the_black_padded_image_maybe_mirrored():
    images = cifar_batch(6)
    black = [-1.0, -2.0, -3.0]
    out = crop_flip(images, torch.Generator().manual_seed(0), black)
    padded = torch.tensor(black).view(1, 3, 1, 1).expand(6, 3, 40, 40).clone()
    padded[:, :, 4:36, 4:36] = images
    shifted = 0
    for i in range(6):
        windows = [w for dy in range(9) for dx in range(9) for w in (padded[i, :, dy:dy + 32, dx:dx + 32],)]
        matches = [(dy, dx, f) for (dy, dx) in ((a, b) for a in range(9) for b in range(9))
                   for f in (False, True)
                   if torch.equal(out[i], windows[dy * 9 + dx].flip(-1) if f else windows[dy * 9 + dx])]
        assert matches, f"image {i} is not a (mirrored) window of its padded original"
        shifted += all(m[:2] != (4, 4) for m in matches)
    assert shifted >= 3  # most crops move the image (81 offsets)


def test_black_level_is_the_normalised_zero_pixel():
    class Norm:
        mean, std = (0.5, 0.25), (0.5, 0.25)

    assert black_level(Norm) == [-1.0, -1.0]


def test_augmented_batches_are_scored_against_f_on_the_augmented_images(cifar_root):
    """The targets a batch trains against are F's outputs of exactly the inputs the encoder sees."""
    data = load_data("cifar10", data_root=cifar_root, val_size=4)
    config = TrainConfig.from_dict({"dataset": "cifar10", "model": "lenet5", "k": 2, "augment": "crop-flip"}).resolved()
    base = create_model("lenet5", input_shape=data.spec.input_shape, num_classes=10).eval()
    cached = {"train": compute_outputs(base, data.train_x)}
    idx = random_groups(len(data.train_y), 2, 0, 1, data.train_x.device)[:8]

    plain_queries, plain_outputs = training_batch(idx, data, cached, None)
    assert torch.equal(plain_queries, data.train_x[idx]) and torch.equal(plain_outputs, cached["train"][idx])

    queries, outputs = training_batch(idx, data, cached, make_augmenter(config, data, base, epoch=1))
    assert queries.shape == plain_queries.shape and outputs.shape == plain_outputs.shape
    assert not torch.equal(queries, plain_queries)  # the inputs were augmented
    expected = compute_outputs(base, queries.flatten(0, 1)).view_as(outputs)
    assert torch.allclose(outputs, expected, atol=1e-6)  # ... and the targets are F's answers to them
    assert not torch.allclose(outputs, plain_outputs, atol=1e-3)  # not the un-augmented images' answers

    again, _ = training_batch(idx, data, cached, make_augmenter(config, data, base, epoch=1))
    later, _ = training_batch(idx, data, cached, make_augmenter(config, data, base, epoch=2))
    assert torch.equal(again, queries) and not torch.equal(later, queries)  # fixed by (seed, epoch)


def test_a_run_with_augmentation_trains_and_records_it(cifar_root, tmp_path):
    common = {"dataset": "cifar10", "model": "lenet5", "k": 2, "epochs": 2, "base_epochs": 1, "val_size": 4,
              "data_root": cifar_root, "download": False, "out": str(tmp_path), "num_threads": 1}
    plain = train(TrainConfig.from_dict({**common, "name": "plain"}), progress=False, log=lambda m: None)
    augmented = train(TrainConfig.from_dict({**common, "name": "aug", "augment": "crop-flip"}), progress=False, log=lambda m: None)
    record = json.loads((augmented.run_dir / "config.json").read_text())
    assert record["config"]["augment"] == "crop-flip"
    losses = [[row["loss"] for row in r.history if row["split"] == "train"] for r in (plain, augmented)]
    assert all(torch.isfinite(torch.tensor(ls)).all() for ls in losses)
    assert losses[0] != losses[1]  # same seed, same groups: only the augmentation differs


@pytest.mark.parametrize("name", MOVING)
def test_augmentation_is_refused_where_it_would_move_a_target_or_has_no_image(name):
    with pytest.raises(UsageError, match="regression"):
        TrainConfig.from_dict({"dataset": "cub-localization", "model": "tv-resnet18", "augment": name}).validate()
    with pytest.raises(UsageError, match="unknown augmentation 'jitter'"):
        TrainConfig.from_dict({"dataset": "cifar10", "model": "lenet5", "augment": "jitter"}).validate()
