"""ASHA over the training recipe for the MNIST cells: lr, weight decay, batch size and schedule.

Every sampled trial is ranked on validation degraded-mode accuracy (``val_degraded_accuracy``)
after each epoch; ASHA stops the weaker half at each rung (epochs 2, 4, 8, ...). Stopped trials
keep their best epoch's checkpoint and predictions and appear in the tables as ``EARLY_STOPPED``.

    parity-ray tune tuned --name tuned --set scheduler.grace_period=1 --set epochs=8
"""

from ray import tune

from parity_ray.search_spaces import base

defaults = {**base.defaults, "dataset": "mnist", "model": "base-mlp", "k": 2, "device": "cpu", "epochs": 16}

param_space = {
    **base.param_space,
    "encoder": tune.grid_search(["addition", "concatenation"]),
    "lr": tune.loguniform(1e-4, 3e-3),
    "weight_decay": tune.loguniform(1e-6, 1e-3),
    "batch_size": tune.choice([32, 64, 128, 256]),
    "lr_schedule": tune.choice(["none", "cosine"]),
}

num_samples = 8  # per encoder

scheduler = {"cls": "asha", "max_t": 16, "grace_period": 2, "reduction_factor": 2}
