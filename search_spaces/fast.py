"""The published grid (``paper.py``) trained with the ``fast`` recipe (parity_ray/recipes.py).

Same datasets, base models and k as ``paper.py``; every cell takes the recipe's epochs, batch
size and learning-rate schedule instead of the published 500/1000 epochs at a constant rate.
"""

from ray import tune

from parity_ray.recipes import recipe_overrides
from parity_ray.search_spaces import paper

defaults = {**paper.defaults, **recipe_overrides("fast")}

param_space = {
    **paper.param_space,
    "cell": tune.grid_search([{"dataset": d, "model": m, "augment": paper.AUGMENT.get(d, "none")}
                              for d, m, _epochs in paper.PUBLISHED]),
}

num_samples = paper.num_samples
