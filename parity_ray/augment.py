"""Training-time augmentations of the k queries, applied to whole batches on the batch's device.

A code is trained to rebuild F's answers to the queries it encoded. With augmentation, the queries
are the *augmented* images, so the trainer recomputes F's outputs on exactly those images (see
``trainer.training_batch``); the original implementation encoded augmented images but trained
against F's outputs of the un-augmented ones, a target the decoder can never match.

* ``none`` - no augmentation (every published MNIST-family and Speech Commands cell).
* ``crop-flip`` - random 32 x 32 crop of the image padded by 4 pixels (black, in the original
  pixel space), then a horizontal flip with probability 1/2: the CIFAR training transform of the
  published artifact.
* ``resized-crop-flip`` - a random crop covering 8-100% of the area with aspect ratio 3/4-4/3,
  resized back to the input size (bilinear), then a horizontal flip with probability 1/2: the Cats
  vs Dogs training transform of the published artifact (on images already decoded at 224 x 224).

Augmentations take and return normalised ``(N, C, H, W)`` tensors and draw every random number
from the generator they are given, so an epoch's augmentation is fixed by (seed, epoch). They are
for classification images: moving pixels would also move a regression target (a box), so
regression datasets refuse them. Register another with :func:`register_augmentation`.
"""

from __future__ import annotations

import math
from typing import Callable, List, Optional, Sequence

import torch

from .registry import Registry

Augmentation = Callable[[torch.Tensor, torch.Generator, Sequence[float]], torch.Tensor]

AUGMENTATIONS: Registry[Augmentation] = Registry("augmentation", "augmentations", """
    A function ``(images (N, C, H, W) normalised, generator, black per channel) -> images`` of the
    same shape, drawing every random number from ``generator`` (an epoch's augmentation is fixed
    by seed and epoch).""")
register_augmentation = AUGMENTATIONS.register


def list_augmentations() -> List[str]:
    return AUGMENTATIONS.names()


def get_augmentation(name: str) -> Optional[Augmentation]:
    """The augmentation called ``name``; None for ``none``."""
    return None if name == "none" else AUGMENTATIONS.get(name)


@register_augmentation("none")
def no_augmentation(images: torch.Tensor, generator: torch.Generator, black: Sequence[float]) -> torch.Tensor:
    return images


def _uniform(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator)


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image mirrored left-right with probability 1/2."""
    flip = (_uniform(len(images), generator) < 0.5).to(images.device)
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


@register_augmentation("crop-flip")
def crop_flip(images: torch.Tensor, generator: torch.Generator, black: Sequence[float], padding: int = 4) -> torch.Tensor:
    n, c, h, w = images.shape
    fill = torch.tensor(list(black), dtype=images.dtype, device=images.device).view(1, c, 1, 1)
    padded = fill.expand(n, c, h + 2 * padding, w + 2 * padding).clone()
    padded[:, :, padding:padding + h, padding:padding + w] = images
    # One gather for the whole batch: each image's crop offset (dy, dx) in [0, 2 * padding].
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(images.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(images.device)
    rows = (dy.view(n, 1) + torch.arange(h, device=images.device)).view(n, 1, h, 1).expand(n, c, h, w + 2 * padding)
    cropped = padded.gather(2, rows)
    cols = (dx.view(n, 1) + torch.arange(w, device=images.device)).view(n, 1, 1, w).expand(n, c, h, w)
    return random_flip(cropped.gather(3, cols), generator)


@register_augmentation("resized-crop-flip")
def resized_crop_flip(images: torch.Tensor, generator: torch.Generator, black: Sequence[float],
                      scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> torch.Tensor:
    from torchvision.ops import roi_align

    n, c, h, w = images.shape
    area = h * w * (scale[0] + (scale[1] - scale[0]) * _uniform(n, generator))
    log_ratio = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * _uniform(n, generator)
    aspect = torch.exp(log_ratio)
    # Crops that do not fit are clamped to the image (the usual sampler retries, then falls back to a
    # centre crop; clamping keeps one draw per image and the same distribution of most crops).
    cw = torch.sqrt(area * aspect).clamp(1, w)
    ch = torch.sqrt(area / aspect).clamp(1, h)
    x0 = _uniform(n, generator) * (w - cw)
    y0 = _uniform(n, generator) * (h - ch)
    boxes = torch.stack([torch.arange(n, dtype=torch.float32), x0, y0, x0 + cw, y0 + ch], dim=1)
    resized = roi_align(images, boxes.to(images.device, images.dtype), output_size=(h, w), spatial_scale=1.0,
                        sampling_ratio=2, aligned=True)
    return random_flip(resized, generator)


def black_level(normalization) -> List[float]:
    """The normalised value of a black pixel per channel: what padding fills with."""
    return [-m / s for m, s in zip(normalization.mean, normalization.std)]
