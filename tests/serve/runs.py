"""Served runs made on the spot (no training): any code, any parity workers, random weights.

The coders are the registered ones (or a user's class-spec), built by ``create_coders`` from the
run's config exactly as the trainer builds them. ``make_run`` writes a base model's weights and a ``best.pt`` holding ``parity_state`` (one model
per coded query, ``models.<j>.``) and the coders' ``encoder_state`` / ``decoder_state``, the way a
trained run stores them, and returns the :class:`ServedRun` the Serve layer takes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from parity_ray.coders import create_coders
from parity_ray.config import TrainConfig
from parity_ray.data import get_dataset_spec
from parity_ray.models import create_model
from parity_ray.serving import ServedRun

USER = "tests.serve.new_coders."


def spec(name: str, **kwargs):
    """A class-spec for a user's own coder in tests/serve/new_coders.py."""
    return {"cls": USER + name, **kwargs}


def _coders(config: dict):
    data = get_dataset_spec(config["dataset"])
    encoder, decoder = create_coders(TrainConfig.from_dict(config).resolved(), data.input_shape, data.num_classes)
    return encoder.eval(), decoder.eval()


def make_run(folder, encoder, decoder, k: int = 2, r: int = 1, parity_model: str = "base-mlp",
             dataset: str = "digits", seed: int = 0, systematic=None, byzantine: int = 0) -> ServedRun:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = get_dataset_spec(dataset)
    torch.manual_seed(seed)
    base = create_model("base-mlp", input_shape=data.input_shape, num_classes=data.num_classes)
    torch.save(base.state_dict(), folder / "base.pt")
    config = {"dataset": dataset, "model": "base-mlp", "parity_model": parity_model, "k": k, "r": r,
              "encoder": encoder, "decoder": decoder, "val_size": data.default_val_size, "seed": seed,
              "byzantine": byzantine, **({} if systematic is None else {"systematic": systematic})}
    enc, dec = _coders(config)
    with torch.no_grad():  # a made run stands for a trained one: no layer left at its zero start
        for parameter in list(enc.parameters()) + list(dec.parameters()):
            if parameter.numel() and not parameter.any():
                parameter.normal_(0.0, 0.01)
    num_coded = int(getattr(enc, "num_coded", r))
    checkpoint = {"encoder_state": enc.state_dict(), "decoder_state": dec.state_dict()}
    if parity_model != "base":
        parity_state = {}
        for j in range(num_coded):
            model = create_model(parity_model, input_shape=data.input_shape, num_classes=data.num_classes, group_size=k)
            parity_state.update({f"models.{j}.{key}": value for key, value in model.state_dict().items()})
        checkpoint["parity_state"] = parity_state
    torch.save(checkpoint, folder / "best.pt")
    return ServedRun(experiment=str(folder), run_id=f"made-{folder.name}", config=config,
                     base_weights_uri=str(folder / "base.pt"), parity_checkpoint_uri=str(folder / "best.pt"),
                     input_norm={"mean": list(data.mean), "std": list(data.std)},
                     degraded_accuracy=None, available_accuracy=None)


def reference_coders(run: ServedRun):
    """The run's encoder and decoder built and loaded independently of the Serve layer."""
    enc, dec = _coders(run.config)
    state = torch.load(run.parity_checkpoint_uri, weights_only=True)
    enc.load_state_dict(state["encoder_state"])
    dec.load_state_dict(state["decoder_state"])
    return enc, dec
