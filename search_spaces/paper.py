"""The published artifact's grid (parity models, SOSP 2019): addition/subtraction, MSE, k in {2, 3, 4}.

Cells the platform cannot run here (an unregistered dataset or model) are listed and reported
as unavailable instead of being dropped.
"""

from ray import tune

from search_spaces import base

defaults = {**base.defaults}

# (dataset, base model, epochs) as published: 500 epochs for the MNIST family, 1000 otherwise.
PUBLISHED = [
    ("mnist", "base-mlp", 500),
    ("mnist", "resnet18", 500),
    ("fashion-mnist", "base-mlp", 500),
    ("fashion-mnist", "resnet18", 500),
    ("cifar10", "resnet18", 1000),
    ("cifar100", "resnet152", 1000),
    ("cats-v-dogs", "resnet18", 1000),
    ("speech-commands", "vgg11", 1000),
]

param_space = {
    **base.param_space,
    "cell": tune.grid_search([{"dataset": d, "model": m, "epochs": e} for d, m, e in PUBLISHED]),
    "k": tune.grid_search([2, 3, 4]),
}

num_samples = base.num_samples
