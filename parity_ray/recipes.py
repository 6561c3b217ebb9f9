"""Training recipes: named sets of config overrides (``parity-ray train --recipe NAME``).

* ``published`` - the parity-models paper's recipe, the config defaults: Adam, lr 1e-3, weight
  decay 1e-5, 64 groups a batch for k = 2 (32 otherwise), constant learning rate.
* ``fast`` - reaches the published recipe's accuracy in far fewer epochs and seconds: parity
  models initialised from F's weights (same architecture: F(X1 + X2) is already near F(X1) + F(X2)
  for much of the input space), larger batches (fewer, better-used optimiser steps on a CPU), a
  higher peak learning rate, decayed to zero by a cosine schedule over a short epoch budget, and the
  run scored with an exponential moving average of its weights. Measured by
  ``benchmarks/time_to_accuracy.py`` (figures in its docstring).

A recipe sits under everything the user states: defaults < recipe < ``--config`` file < flags.
Register another with :func:`register_recipe`; ``parity-ray list`` shows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping

from .registry import Registry


@dataclass(frozen=True)
class Recipe:
    name: str
    overrides: Mapping[str, Any]  # TrainConfig keys and values
    description: str = ""


RECIPES: Registry = Registry("recipe", "recipes", """
    A :class:`Recipe`: ``overrides`` (TrainConfig keys and values, checked at registration) laid
    under everything the user states (defaults < recipe < ``--config`` file < flags), and a one-line
    ``description``.""")


def register_recipe(name: str, overrides: Mapping[str, Any], description: str = "") -> Recipe:
    """Register ``overrides`` (TrainConfig keys) under ``name``; keys are checked now, not at first use."""
    from .config import TrainConfig

    if name in RECIPES:
        if dict(RECIPES.get(name).overrides) != dict(overrides):
            raise ValueError(f"recipe '{name}' is already registered")
        return RECIPES.get(name)
    TrainConfig.from_dict(dict(overrides))  # unknown keys and wrong types fail at registration
    recipe = Recipe(name, dict(overrides), description)
    RECIPES.register(name)(recipe)
    return recipe


def get_recipe(name: str) -> Recipe:
    return RECIPES.get(name)


def list_recipes() -> List[str]:
    return RECIPES.names()


def recipe_overrides(name: str) -> Dict[str, Any]:
    """A copy of recipe ``name``'s overrides."""
    return dict(get_recipe(name).overrides)


PUBLISHED: Dict[str, Any] = {}  # the config defaults are the published recipe

# Selected on validation curves only (2026-12-06: benchmarks/time_to_accuracy.py --candidate ..., MNIST
# base-mlp, k = 2, one torch thread; each run's model at an epoch is the one selected on validation so
# far, and it is judged by that model's validation degraded accuracy; test figures were printed, not
# used). The published recipe: validation 0.8860 after 10 epochs, 0.9280 after 100 (test 0.9312).
# Candidates, 40 epochs unless noted (final validation accuracy; CPU time to the published 10-epoch
# validation figure as a share of the published recipe's): ema_decay 0.995 0.9258 (0.30x), ema_decay
# 0.998 (the previous choice, made on test curves) 0.9248 (0.28x), no weight average (30 epochs) 0.9202
# (0.34x), lr 1e-3 0.9114 (0.39x), random initialisation 0.9024 (0.88x). Highest final validation
# accuracy wins: ema_decay 0.995 (its test figure, reported only: 0.9314). No candidate reached the
# published 100-epoch validation figure (0.9280) in 40 epochs.
FAST: Dict[str, Any] = {
    "epochs": 40,
    "batch_size": 256,  # 4x the published batch: ~1.9x cheaper epochs on a CPU
    "lr": 3e-3,
    "lr_schedule": "cosine",
    "parity_init": "base",  # parity models start from F's weights: 0.87 after one MNIST epoch instead of 0.79
    "ema_decay": 0.995,  # scored with a moving average of the weights (horizon ~2 epochs): higher sooner, steadier
}

register_recipe("published", PUBLISHED, "the paper's: Adam lr 1e-3, wd 1e-5, batch 64 groups (k=2) / 32, constant lr")
register_recipe("fast", FAST, "parity models start from F's weights; batch 256 groups, Adam lr 3e-3 decayed to 0 by a cosine over 40 epochs; "
                "scored with a moving average of the weights (ema_decay 0.995); selected on validation curves")

__all__ = ["RECIPES", "Recipe", "get_recipe", "list_recipes", "recipe_overrides", "register_recipe"]
