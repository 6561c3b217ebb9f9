"""A CPU grid that finishes in minutes: digits and MNIST, k in {2, 3}, addition and concatenation."""

from ray import tune

from parity_ray.search_spaces import base

defaults = {**base.defaults, "model": "base-mlp", "device": "cpu"}

param_space = {
    **base.param_space,
    "cell": tune.grid_search(
        [
            {"dataset": "digits", "epochs": 40},
            {"dataset": "mnist", "epochs": 4},
        ]
    ),
    "k": tune.grid_search([2, 3]),
    "encoder": tune.grid_search(["addition", "concatenation"]),
}

num_samples = base.num_samples
