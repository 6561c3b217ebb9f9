"""What every space starts from: the published parity-models training recipe."""

defaults = {
    "encoder": "addition",
    "decoder": "subtraction",
    "loss": "mse",  # the paper trains parity models with mean-squared error on outputs
    "optimizer": "adam",
    "lr": 1e-3,
    "weight_decay": 1e-5,
    "r": 1,
    "seed": 0,
}

param_space = {}

num_samples = 1
