"""The published artifact's grid (parity models, SOSP 2019): addition/subtraction, MSE, k in {2, 3, 4}.

Cells the platform cannot run here are listed and reported as unavailable instead of being
dropped: an unregistered dataset or model, a task the trainer does not run yet, or a dataset
that is never downloaded (Speech Commands, Cats vs Dogs, CUB) whose files are not in the data
roots; the reason names the files expected and the folders searched. Give the data with
``--set data_root=...`` or ``PARITY_RAY_DATA``.
"""

from ray import tune

from parity_ray.search_spaces import base

defaults = {**base.defaults}

# (dataset, base model, epochs) as published: 500 epochs for the MNIST family, 1000 otherwise.
PUBLISHED = [
    ("mnist", "base-mlp", 500),
    ("mnist", "resnet18", 500),
    ("fashion-mnist", "base-mlp", 500),
    ("fashion-mnist", "resnet18", 500),
    ("cifar10", "resnet18", 1000),
    ("cifar100", "resnet152", 1000),
    ("cats-v-dogs", "tv-resnet18", 1000),  # torchvision's ResNet-18 (ImageNet stem), 224 x 224, 2 classes
    ("speech-commands", "vgg11", 1000),  # VGG-11 (BN) on 1 x 161 x 101 log spectrograms, 30 words
    # CUB-200 box localisation (ResNet-18 with 4 outputs, MSE on boxes, scored by IoU >= 0.75): a
    # regression task, run when the CUB_200_2011 files are in a data root.
    ("cub-localization", "tv-resnet18", 1000),
]

# The published training transforms (CIFAR: padded random crop + flip; Cats vs Dogs: random resized
# crop + flip). Here F's outputs are recomputed on the augmented images (parity_ray/augment.py).
AUGMENT = {"cifar10": "crop-flip", "cifar100": "crop-flip", "cats-v-dogs": "resized-crop-flip"}

param_space = {
    **base.param_space,
    "cell": tune.grid_search([{"dataset": d, "model": m, "epochs": e, "augment": AUGMENT.get(d, "none")}
                              for d, m, e in PUBLISHED]),
    "k": tune.grid_search([2, 3, 4]),
}

num_samples = base.num_samples
