"""The paper's grid with the concatenation encoder (each image downsampled and tiled), k in {2, 4}."""

from ray import tune

from parity_ray.search_spaces import paper

defaults = {**paper.defaults, "encoder": "concatenation"}

param_space = {**paper.param_space, "k": tune.grid_search([2, 4])}

num_samples = paper.num_samples
