"""An independent recomputation: a small real Berrut run's figures, rebuilt from its files alone.

The reference below shares nothing with the platform's coding and scoring code: its own Chebyshev
points and Berrut weights (numpy, Berrut's first form with signs alternating along the ordered
nodes), its own loop over erasure patterns, its own accuracy sums. It reads what a run leaves
behind: ``predictions.parquet`` (which test images form each group), ``config.json`` (the base
model's weights file, the normalisation) and ``summary.json`` (the figures it checks). Only the
data reader and the base model's architecture are the platform's (they are not what is checked).
Any difference fails the test.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from parity_ray.config import TrainConfig
from parity_ray.data import load_data
from parity_ray.models import create_model
from parity_ray.trainer import train


def chebyshev_first_kind(k: int) -> np.ndarray:
    return np.array([math.cos((2 * j + 1) * math.pi / (2 * k)) for j in range(k)])


def worker_points(k: int, r: int, systematic: bool) -> np.ndarray:
    """ApproxIFER: n = k + r workers at cos(i pi / n). Systematic: the k query points, then the r
    candidates farthest from every query point (ties to the lower index), in index order."""
    n = k + r
    candidates = np.array([math.cos(i * math.pi / n) for i in range(n)])
    if not systematic:
        return candidates
    query = chebyshev_first_kind(k)
    distance = np.array([np.abs(query - z).min() for z in candidates])
    far = sorted(sorted(range(n), key=lambda i: (-distance[i], i))[:r])
    return np.concatenate([query, candidates[far]])


def berrut_interpolate(nodes: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Berrut's rational interpolant through (nodes, values), evaluated at ``at``: values (..., m, C)."""
    order = np.argsort(nodes)
    signs = np.empty(len(nodes))
    signs[order] = [(-1.0) ** rank for rank in range(len(nodes))]
    out = []
    for x in at:
        hit = np.flatnonzero(np.abs(x - nodes) < 1e-12)
        if len(hit):
            out.append(values[..., hit[0], :])
            continue
        terms = signs / (x - nodes)
        out.append(np.einsum("m,...mc->...c", terms / terms.sum(), values))
    return np.stack(out, axis=-2)


def reference_figures(run_dir, r: int) -> dict:
    """Available, degraded (e = 1..r) and all-k (e = 1..r) accuracy, recomputed from the run's files."""
    record = json.loads((run_dir / "config.json").read_text())
    config = TrainConfig.from_dict(record["config"]).resolved()
    k, systematic = config.k, config.systematic
    data = load_data(config.dataset, val_size=config.val_size, split_seed=config.seed, input_norm=config.input_norm)
    model = create_model(config.model, input_shape=data.spec.input_shape, num_classes=data.spec.num_classes)
    model.load_state_dict(torch.load(record["base_model"]["weights"], weights_only=True))
    model.eval()

    def f(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x.astype(np.float32))).double().numpy()

    images, labels = data.test_x.numpy().astype(np.float64), data.test_y.numpy()
    figures = {"available_accuracy": float((f(images).argmax(1) == labels).mean())}

    predictions = pd.read_parquet(run_dir / "predictions.parquet")
    singles = predictions[predictions.erasures == 1]
    groups = singles.pivot_table(index="group_id", columns="position", values="test_index", aggfunc="first")
    groups = groups.to_numpy().astype(int)  # (G, k): the test images of each scored group, by slot
    query = chebyshev_first_kind(k)
    workers = worker_points(k, r, systematic)
    x = images[groups]  # (G, k, C, H, W)
    truth = f(x.reshape(-1, *x.shape[2:])).reshape(len(groups), k, -1)
    coded_points = workers[k:] if systematic else workers
    coded = berrut_interpolate(query, x.reshape(len(groups), k, -1), coded_points)  # (G, coded workers, pixels)
    coded_out = f(coded.reshape(-1, *x.shape[2:])).reshape(len(groups), len(coded_points), -1)
    outputs = np.concatenate([truth, coded_out], axis=1) if systematic else coded_out  # (G, n, C)
    label = labels[groups]  # (G, k)
    for e in range(1, r + 1):
        rebuilt_right = rebuilt_total = served_right = served_total = 0
        for lost in itertools.combinations(range(k + r), e):
            kept = [i for i in range(k + r) if i not in lost]
            estimate = berrut_interpolate(workers[kept], outputs[:, kept], query)  # (G, k, C)
            rebuilt = [j for j in range(k) if j in lost] if systematic else list(range(k))
            served = estimate.copy()
            if systematic:  # an answer whose own output arrived is that output
                arrived = [j for j in range(k) if j not in lost]
                served[:, arrived] = truth[:, arrived]
            correct = served.argmax(-1) == label
            rebuilt_right += int(correct[:, rebuilt].sum())
            rebuilt_total += len(groups) * len(rebuilt)
            served_right += int(correct.sum())
            served_total += correct.size
        figures[f"degraded_accuracy_e{e}"] = rebuilt_right / rebuilt_total
        figures[f"all_accuracy_e{e}"] = served_right / served_total
    return figures


@pytest.mark.parametrize("systematic", [False, True], ids=["non-systematic", "systematic"])
def test_a_berrut_run_recomputed_independently(tmp_path, systematic):
    k, r = 3, 2
    config = TrainConfig.from_dict({
        "dataset": "digits", "model": "base-mlp", "base_epochs": 20, "seed": 1, "k": k, "r": r, "epochs": 0,
        "encoder": "berrut", "decoder": "berrut", "parity_model": "base", "systematic": systematic,
        "out": str(tmp_path), "name": "berrut",
    })
    result = train(config, progress=False, log=lambda _m: None)
    reference = reference_figures(result.run_dir, r)
    platform = {key: result.summary[key] for key in reference}
    assert platform == pytest.approx(reference, abs=1e-12), (platform, reference)
