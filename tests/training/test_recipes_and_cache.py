"""Recipes (published, fast) and the on-disk cache of base-model outputs."""

from __future__ import annotations

import json

import pytest
import torch

from parity_ray import UsageError
from parity_ray.base import base_outputs_cache_path, base_outputs_key, cached_base_outputs, compute_outputs
from parity_ray.cli import build_parser, config_from_args
from parity_ray.config import TrainConfig
from parity_ray.data import load_data
from parity_ray.models import create_model
from parity_ray.recipes import get_recipe, list_recipes, recipe_overrides, register_recipe
from parity_ray.trainer import train

DIGITS = dict(dataset="digits", model="base-mlp", k=2, seed=1, base_epochs=3, device="cpu", num_threads=1)


def test_recipes_are_a_registry_of_checked_overrides():
    assert {"published", "fast"} <= set(list_recipes())
    assert recipe_overrides("published") == {}
    fast = TrainConfig.from_dict(recipe_overrides("fast")).validate()
    assert fast.lr_schedule == "cosine" and fast.epochs < 100
    with pytest.raises(UsageError, match="unknown recipe 'fsat'.*fast"):
        get_recipe("fsat")
    with pytest.raises(UsageError, match="unknown config key"):
        register_recipe("broken", {"learning_rate": 1.0})
    assert "broken" not in list_recipes()


def test_the_recipe_sits_under_config_file_and_flags(tmp_path):
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps({"batch_size": 128}))
    args = build_parser().parse_args(["train", "--recipe", "fast", "--config", str(config_file), "--lr", "0.01"])
    config = config_from_args(args)
    fast = recipe_overrides("fast")
    assert config.lr == 0.01 and config.batch_size == 128  # flag and file win
    assert config.lr_schedule == fast["lr_schedule"] and config.epochs == fast["epochs"]  # the rest from the recipe


def test_base_outputs_are_cached_per_weights_split_and_normalisation(tmp_path, monkeypatch):
    monkeypatch.setenv("PARITY_RAY_CACHE", str(tmp_path / "cache"))
    config = TrainConfig.from_dict(DIGITS).resolved()
    data = load_data("digits", val_size=config.val_size, split_seed=1)
    model = create_model("base-mlp", input_shape=data.spec.input_shape, num_classes=10)
    first, cached = cached_base_outputs(model, config, data, torch.device("cpu"))
    assert not cached
    second, cached = cached_base_outputs(model, config, data, torch.device("cpu"))
    assert cached and all(torch.equal(first[s], second[s]) for s in first)
    assert torch.equal(second["test"], compute_outputs(model, data.test_x))
    key = base_outputs_key(model, config, data, torch.device("cpu"))
    # other weights, another split, another normalisation: other entries
    other = create_model("base-mlp", input_shape=data.spec.input_shape, num_classes=10)
    assert base_outputs_cache_path(base_outputs_key(other, config, data, "cpu")) != base_outputs_cache_path(key)
    resplit = load_data("digits", val_size=config.val_size, split_seed=2)
    assert base_outputs_cache_path(base_outputs_key(model, config, resplit, "cpu")) != base_outputs_cache_path(key)
    raw = load_data("digits", val_size=config.val_size, split_seed=1, input_norm="none")
    assert base_outputs_cache_path(base_outputs_key(model, config, raw, "cpu")) != base_outputs_cache_path(key)
    # a damaged entry is recomputed, not trusted
    base_outputs_cache_path(key).write_bytes(b"not a torch file")
    again, cached = cached_base_outputs(model, config, data, torch.device("cpu"))
    assert not cached and torch.equal(again["val"], first["val"])


def test_a_second_run_on_the_same_base_reads_its_outputs_from_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("PARITY_RAY_CACHE", str(tmp_path / "cache"))
    common = {**DIGITS, "epochs": 1, "out": str(tmp_path)}
    first = train(TrainConfig.from_dict({**common, "name": "a"}), progress=False, log=lambda _m: None)
    second = train(TrainConfig.from_dict({**common, "name": "b"}), progress=False, log=lambda _m: None)
    assert first.summary["base_outputs_cached"] is False and second.summary["base_outputs_cached"] is True
    assert first.history == second.history  # the cached outputs are the computed ones
