"""``--run best`` means what a reader expects: never a ranking of a toy against a real task."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from parity_ray import results
from parity_ray.errors import UsageError
from parity_ray.serving import resolve_run
from tests.analysis.synthetic import _table, write_grid


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """One experiment holding an MNIST grid and a digits grid (the quick grid's mix)."""
    root = tmp_path_factory.mktemp("mixed")
    labels = np.arange(300) % 10
    grid = {"k": [2], "r": [1], "encoder": ["addition"], "loss": ["mse", "kl"], "lr": [0.001]}
    mnist = write_grid(root / "exp", labels, dataset="mnist", grid=grid)
    digits = write_grid(root / "digits", labels, dataset="digits", grid=grid, seed=1)
    for name in ("runs", "base_models"):
        both = pd.concat([results.load(str(mnist)).__getattribute__(name), results.load(str(digits)).__getattribute__(name)],
                         ignore_index=True)
        _table(both, mnist, name)
    return str(mnist)


def test_best_over_several_datasets_is_refused_naming_them(mixed):
    with pytest.raises(UsageError) as raised:
        resolve_run(mixed, "best")
    message = str(raised.value)
    assert "\n" not in message and "--run best is ambiguous" in message
    assert "pass --dataset (one of digits, mnist)" in message
    assert "digits (1x8x8): digits-base-mlp-k2" in message and "mnist (1x28x28): mnist-base-mlp-k2" in message


@pytest.mark.parametrize("dataset", ["mnist", "digits"])
def test_best_of_one_dataset_is_that_datasets_best(mixed, dataset):
    runs = results.load(mixed).runs
    served = resolve_run(mixed, "best", dataset=dataset)
    assert served.run_id == results.best_run(runs[runs.dataset == dataset])["run_id"]
