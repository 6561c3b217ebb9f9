"""Every code family at equal redundancy: dataset x base model x k x r x code, side by side.

Cells at the same (k, r) carry the same redundancy r/k, so the degraded-accuracy table, the
report and the notebook can name the best code per cell. Families:

* parity models: addition / concatenation encoders, subtraction decoder, trained parity models;
* learned codes: mlp / conv encoders with the mlp decoder, F itself on the coded queries;
* Berrut (ApproxIFER): non-systematic and systematic with F (nothing to train, epochs 0), and
  with trained workers (non-systematic workers start from F's weights; the systematic parity model
  from scratch, as the paper's).

Base models: LeNet-5, ResNet-18 and a small vision transformer (``vit``), every family on each;
the transformer also with a LeNet-5 parity model (addition), a parity model of another architecture.
"""

from ray import tune

from parity_ray.search_spaces import base

defaults = {**base.defaults, "epochs": 50}

DATA = [
    {"dataset": dataset, "model": model}
    for dataset in ("mnist", "fashion-mnist")
    for model in ("lenet5", "resnet18", "vit")
]

CODES = [
    {"encoder": "addition", "decoder": "subtraction"},
    {"encoder": "concatenation", "decoder": "subtraction"},
    {"encoder": "mlp", "decoder": "mlp", "parity_model": "base", "loss": "kl"},
    {"encoder": "conv", "decoder": "mlp", "parity_model": "base", "loss": "kl"},
    {"encoder": "berrut", "decoder": "berrut", "systematic": False, "parity_model": "base", "epochs": 0},
    {"encoder": "berrut", "decoder": "berrut", "systematic": True, "parity_model": "base", "epochs": 0},
    {"encoder": "berrut", "decoder": "berrut", "systematic": False, "parity_init": "base", "loss": "kl"},
    {"encoder": "berrut", "decoder": "berrut", "systematic": True, "loss": "kl"},
]

# A transformer base coded by a convolutional parity model: the parity architecture need not be F's.
CNN_PARITY_FOR_VIT = [{**data, "encoder": "addition", "decoder": "subtraction", "parity_model": "lenet5"}
                      for data in DATA if data["model"] == "vit"]

param_space = {
    **base.param_space,
    "cell": tune.grid_search([{**data, **code} for data in DATA for code in CODES] + CNN_PARITY_FOR_VIT),
    "k": tune.grid_search([2, 4, 8, 10, 12]),
    "r": tune.grid_search([1, 2, 3]),
}

num_samples = base.num_samples
