"""Every code family at equal redundancy: dataset x base model x k x r x code, side by side.

Cells at the same (k, r) carry the same redundancy r/k, so the degraded-accuracy table, the
report and the notebook can name the best code per cell. Families:

* parity models: addition / concatenation encoders, subtraction decoder, trained parity models;
* learned codes: mlp / conv encoders with the mlp decoder, F itself on the coded queries; the
  projection encoder with slot-mlp parity models and the subtraction decoder;
* Berrut (ApproxIFER): non-systematic and systematic with F (nothing to train, epochs 0), and
  with trained workers (non-systematic workers start from F's weights; the systematic parity model
  from scratch, as the paper's).

Base models: LeNet-5, ResNet-18 and a small vision transformer (``vit``), every family on each.
Parity architectures: F's own, and a larger one per base (``lenet5-wide``, ``resnet152``,
``vit-wide``) for the addition and concatenation encoders; the transformer also with a LeNet-5
parity model (addition), a parity model of another family.
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

# The parity architecture is an axis: F's own (the cells above) and a larger network for each base, with
# the two parity-model encoders; a transformer base also with a convolutional parity model. The runs
# table records each parity model's parameters and FLOPs per coded query (parity_params, parity_flops),
# and the report shows them beside the accuracy they buy.
LARGER_PARITY = {"lenet5": "lenet5-wide", "resnet18": "resnet152", "vit": "vit-wide"}
PARITY_ARCHITECTURES = [
    {**data, "encoder": encoder, "decoder": "subtraction", "parity_model": LARGER_PARITY[data["model"]]}
    for data in DATA for encoder in ("addition", "concatenation")
] + [{**data, "encoder": "addition", "decoder": "subtraction", "parity_model": "lenet5"}
     for data in DATA if data["model"] == "vit"]

# A learned downsample-and-concatenate for every base: k compressed queries side by side in one coded
# query, read slot by slot by a parity model of its own architecture whose cost per coded query is
# about LeNet-5's at k = 8 (0.81 vs 0.83 MFLOPs on MNIST); trained on the labels and decoded with a
# learned correction of the arrived outputs, its best here (README, codes section).
SLOT_CODES = [{**data, "encoder": "projection", "decoder": "corrected-subtraction", "parity_model": "slot-mlp",
               "loss": "ce"} for data in DATA]

param_space = {
    **base.param_space,
    "cell": tune.grid_search([{**data, **code} for data in DATA for code in CODES] + PARITY_ARCHITECTURES + SLOT_CODES),
    "k": tune.grid_search([2, 4, 8, 10, 12]),
    "r": tune.grid_search([1, 2, 3]),
}

num_samples = base.num_samples
