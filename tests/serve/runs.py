"""Served runs made on the spot (no training): any code, any parity workers, random weights.

``make_run`` writes a base model's weights and a ``best.pt`` holding ``parity_state`` (one model
per coded query, ``models.<j>.``) and the coders' ``encoder_state`` / ``decoder_state``, the way a
trained run stores them, and returns the :class:`ServedRun` the Serve layer takes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from parity_ray.coders import DECODERS, ENCODERS
from parity_ray.data import get_dataset_spec
from parity_ray.models import create_model
from parity_ray.serving import ServedRun

NEW = "tests.serve.new_coders."


def spec(name: str, **kwargs):
    return {"cls": NEW + name, **kwargs}


def make_run(folder, encoder, decoder, k: int = 2, r: int = 1, parity_model: str = "base-mlp",
             dataset: str = "digits", seed: int = 0) -> ServedRun:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = get_dataset_spec(dataset)
    torch.manual_seed(seed)
    base = create_model("base-mlp", input_shape=data.input_shape, num_classes=data.num_classes)
    torch.save(base.state_dict(), folder / "base.pt")
    context = {"k": k, "r": r, "input_shape": tuple(data.input_shape), "num_classes": data.num_classes}
    enc = ENCODERS.create(encoder, **context)
    dec = DECODERS.create(decoder, **context)
    num_coded = int(getattr(enc, "num_coded", r))
    checkpoint = {"encoder_state": enc.state_dict(), "decoder_state": dec.state_dict()}
    if parity_model != "base":
        parity_state = {}
        for j in range(num_coded):
            model = create_model(parity_model, input_shape=data.input_shape, num_classes=data.num_classes)
            parity_state.update({f"models.{j}.{key}": value for key, value in model.state_dict().items()})
        checkpoint["parity_state"] = parity_state
    torch.save(checkpoint, folder / "best.pt")
    config = {"dataset": dataset, "model": "base-mlp", "parity_model": parity_model, "k": k, "r": r,
              "encoder": encoder, "decoder": decoder, "val_size": data.default_val_size, "seed": seed}
    return ServedRun(experiment=str(folder), run_id=f"made-{folder.name}", config=config,
                     base_weights_uri=str(folder / "base.pt"), parity_checkpoint_uri=str(folder / "best.pt"),
                     input_norm={"mean": list(data.mean), "std": list(data.std)},
                     degraded_accuracy=None, available_accuracy=None)


def reference_coders(run: ServedRun):
    """The run's encoder and decoder built and loaded independently of the Serve layer."""
    data = get_dataset_spec(run.config["dataset"])
    context = {"k": run.k, "r": run.r, "input_shape": tuple(data.input_shape), "num_classes": data.num_classes}
    enc = ENCODERS.create(run.config["encoder"], **context).eval()
    dec = DECODERS.create(run.config["decoder"], **context).eval()
    state = torch.load(run.parity_checkpoint_uri, weights_only=True)
    enc.load_state_dict(state["encoder_state"])
    dec.load_state_dict(state["decoder_state"])
    return enc, dec
