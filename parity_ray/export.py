"""``parity-ray export``: a run's trained parts as plain state_dicts anyone can load.

For each trained part of a run (every parity model; the encoder and decoder when the code has
weights) the export folder holds ``<part>.pt``, a ``state_dict`` of tensors only (loads with
``torch.load(..., weights_only=True)``), and ``<part>.json`` saying how to build the module it
fits: the registry and entry name (or class-spec), the constructor kwargs, input shape, k, r and
the library versions of the run. ``export.json`` lists the parts. :func:`load_part` builds and
loads one; by hand it is ``registry.create(spec, **kwargs).load_state_dict(torch.load(pt))``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from torch import nn

from . import storage
from .atomic import atomic_write_json, ordinary_mode
from .errors import UsageError
from .provenance import library_versions
from .torch_files import atomic_torch_save, load_torch_safely

EXPORT_FORMAT = 1


@dataclass
class RunSource:
    """Where a run's config and best checkpoint are: a run folder, or a run of an experiment."""

    run_id: str
    config: Dict[str, Any]  # the run's TrainConfig, resolved
    checkpoint_uri: Optional[str]  # best.pt; None when the run has no trained part
    versions: Dict[str, Any]
    origin: str  # the run folder, or '<experiment> run <id>'


def from_run_dir(path: str) -> RunSource:
    """A run folder of ``parity-ray train`` or a trial's checkpoint folder (``config.json`` + ``checkpoints/best.pt``)."""
    from .config import TrainConfig
    from .registry import check_stored_config

    record_uri = storage.join(path, "config.json")
    if not storage.exists(path):
        raise UsageError(f"run folder '{path}' does not exist")
    if not storage.exists(record_uri):
        raise UsageError(f"'{path}' is not a run folder (no config.json); pass a run folder or --experiment E --run ID")
    record = json.loads(storage.read_bytes(record_uri))
    check_stored_config(record["config"], f"run folder '{path}'")  # before anything is imported
    config = TrainConfig.from_dict(record["config"]).resolved().to_dict()
    best = storage.join(path, "checkpoints", "best.pt")
    return RunSource(run_id=_folder_name(path), config=config, checkpoint_uri=best if storage.exists(best) else None,
                     versions=record.get("versions") or {}, origin=str(path))


def from_experiment(experiment: str, run: str = "best", *, dataset: Optional[str] = None) -> RunSource:
    from .serving import resolve_run

    served = resolve_run(experiment, run, dataset=dataset)
    versions = {}
    if served.parity_checkpoint_uri:
        record = storage.join(served.parity_checkpoint_uri.rsplit("/checkpoints/", 1)[0], "config.json")
        if storage.exists(record):
            versions = json.loads(storage.read_bytes(record)).get("versions") or {}
    return RunSource(run_id=served.run_id, config=served.config, checkpoint_uri=served.parity_checkpoint_uri,
                     versions=versions, origin=f"{experiment} run {served.run_id}")


def _folder_name(path: str) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1] if storage.is_remote(path) else Path(path).resolve().name


# --------------------------------------------------------------------------- parts


def _parts(source: RunSource) -> List[Dict[str, Any]]:
    """Every trained part of the run: ``{"name", "registry", "spec", "kwargs", "state"}``."""
    from .coders import create_coders, is_base_worker
    from .config import TrainConfig
    from .data import get_dataset_spec

    config = TrainConfig.from_dict(source.config).resolved()
    spec = get_dataset_spec(config.dataset)
    checkpoint = load_torch_safely(storage.read_bytes(source.checkpoint_uri), source.checkpoint_uri) \
        if source.checkpoint_uri else {}
    parts = []
    if not is_base_worker(config.parity_model):
        state = checkpoint.get("parity_state") or {}
        indices = sorted({int(key.split(".")[1]) for key in state if key.startswith("models.")})
        if not indices:
            raise UsageError(f"run {source.origin} has no trained parity model in its checkpoint")
        model_kwargs = {"input_shape": list(spec.input_shape), "num_classes": spec.num_classes}
        for j in indices:
            prefix = f"models.{j}."
            parts.append({"name": f"parity_{j}", "registry": "model", "spec": config.parity_model, "kwargs": model_kwargs,
                          "index": j, "state": {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}})
    encoder, decoder = create_coders(config, spec.input_shape, spec.num_classes)
    systematic = bool(getattr(encoder, "systematic", True))
    coder_kwargs = {
        "encoder": {"k": config.k, "r": config.r, "input_shape": list(spec.input_shape), "systematic": systematic},
        "decoder": {"k": config.k, "r": config.r, "systematic": systematic, "input_shape": list(spec.input_shape),
                    "num_outputs": spec.num_classes, "num_classes": spec.num_classes,
                    **({"byzantine": config.byzantine} if config.byzantine else {})},
    }
    for role, module, spec_value in (("encoder", encoder, config.encoder), ("decoder", decoder, config.decoder)):
        state = checkpoint.get(f"{role}_state") or {}
        if any(p.numel() for p in module.parameters()) and state:  # a code with weights: learned coders
            parts.append({"name": role, "registry": role, "spec": spec_value, "kwargs": coder_kwargs[role], "state": state})
    return parts


def _manifest(part: Dict[str, Any], source: RunSource, config: Dict[str, Any]) -> Dict[str, Any]:
    from .registry import spec_name

    return {
        "format": EXPORT_FORMAT,
        "part": part["name"],
        "state_dict": f"{part['name']}.pt",
        "registry": part["registry"],
        "name": spec_name(part["spec"]),
        "spec": part["spec"],  # what to pass to the registry: the name, or the class-spec with its kwargs
        "kwargs": part["kwargs"],
        **({"parity_index": part["index"]} if "index" in part else {}),
        "dataset": config["dataset"],
        "input_shape": part["kwargs"]["input_shape"],
        "k": int(config["k"]),
        "r": int(config["r"]),
        "run_id": source.run_id,
        "source": source.origin,
        "versions": source.versions or library_versions(),
    }


def export_run(source: RunSource, out: str) -> Dict[str, Any]:
    """Write every trained part of the run into the new folder ``out``; returns ``export.json``'s content.

    Nothing is written unless every part was read and built: the files go to a staging folder that
    is renamed to ``out`` at the end (``out`` must not exist yet, or be empty).
    """
    if storage.is_remote(out):
        raise UsageError(f"--out '{out}' must be a local folder")
    target = Path(out).expanduser().resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"--out '{out}' exists and is not an empty folder; choose a new folder")
    parts = _parts(source)
    if not parts:
        raise UsageError(f"run {source.origin} has no trained part to export (its code and workers have no weights)")
    manifests = [_manifest(part, source, source.config) for part in parts]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    ordinary_mode(staging, folder=True)  # an export is meant to be handed on
    try:
        for part, manifest in zip(parts, manifests):
            atomic_torch_save({k: v.detach().cpu().clone() for k, v in part["state"].items()}, staging / manifest["state_dict"])
            atomic_write_json(staging / f"{part['name']}.json", manifest)
        summary = {"format": EXPORT_FORMAT, "run_id": source.run_id, "source": source.origin, "config": source.config,
                   "parts": [f"{m['part']}.json" for m in manifests]}
        atomic_write_json(staging / "export.json", summary)
        if target.exists():
            target.rmdir()  # empty, checked above
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {**summary, "out": str(target)}


# --------------------------------------------------------------------------- loading


def build_part(manifest: Dict[str, Any]) -> nn.Module:
    """The module a part's JSON describes, with fresh weights."""
    from .coders import DECODERS, ENCODERS
    from .models import MODELS

    registry = {"model": MODELS, "encoder": ENCODERS, "decoder": DECODERS}[manifest["registry"]]
    kwargs = dict(manifest["kwargs"])
    kwargs["input_shape"] = tuple(kwargs["input_shape"])
    return registry.create(manifest["spec"], **kwargs)


def load_part(json_path: str) -> nn.Module:
    """Build an exported part and load its state_dict (``weights_only=True``), in eval mode."""
    path = Path(json_path)
    manifest = json.loads(path.read_text())
    module = build_part(manifest)
    state_path = path.parent / manifest["state_dict"]
    module.load_state_dict(load_torch_safely(state_path, str(state_path)))
    return module.eval()


def format_summary(summary: Dict[str, Any]) -> str:
    return "\n".join([f"exported run {summary['run_id']} ({summary['source']}) to {summary['out']}"]
                     + [f"  {name}" for name in summary["parts"]])


__all__ = ["RunSource", "build_part", "export_run", "from_experiment", "from_run_dir", "load_part"]
