"""Typed run configuration. Unknown keys and wrong types fail loudly.

A config comes from defaults, then a JSON/YAML file (``--config``), then CLI flags,
and is recorded *resolved* (every default filled in) with each artifact.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import torch

from .bounds import bound_text, check_fields
from .errors import UsageError, choices_hint
from .registry import spec_name
from .tasks import TASKS, get_task, list_tasks

SpecType = Union[str, Dict[str, Any]]

# Fields whose value is a registered name: field -> the registry's key (``parity_ray.registry``).
# Their choices in ``--help`` and in messages come from the registry, never from this file.
REGISTERED_FIELDS = {
    "dataset": "datasets", "model": "models", "parity_model": "models", "parity_init": "parity_inits",
    "encoder": "encoders", "decoder": "decoders", "loss": "losses", "optimizer": "optimizers",
    "lr_schedule": "lr_schedules", "augment": "augmentations",
}


# The largest seed (numpy's and every derived torch seed stay in range) and torch CPU thread count
# (more threads than this crash torch) a config may ask for.
SEED_MAX = 2**32 - 1
THREADS_MAX = 1024
# The largest k and r a code is built for when a config is checked (its matrices have k + r columns);
# the data's own bound (k up to the examples of the smallest split) is checked when the data is read.
CODE_MAX = 2**20

# What ``--smoke-test`` means everywhere (train, tune, quickstart, benchmarks): one owner.
SMOKE_OVERRIDES = {"epochs": 1, "max_train_batches": 2, "max_eval_groups": 64, "base_epochs": 1, "device": "cpu",
                   "max_examples": 512}


@dataclass
class TrainConfig:
    # ---- what is coded ----
    dataset: str = "mnist"  # the dataset F answers queries of
    model: SpecType = "base-mlp"  # the deployed base model F: a registered name or {"cls": ..., **kwargs}
    parity_model: Optional[SpecType] = None  # worker on coded queries: a trained model (None = F's architecture, the paper's choice; berrut with epochs 0: F) or "base" (F itself, frozen)
    parity_init: str = "random"  # trained workers start from random weights (paper) or from F's weights ("base"; same architecture)
    k: int = field(default=2, metadata={"min": 2, "max": CODE_MAX})  # data queries per coding group
    r: int = field(default=1, metadata={"min": 1, "max": CODE_MAX})  # extra workers per group (parity queries, or coded queries beyond k); erasure patterns up to r are scored
    encoder: SpecType = "addition"  # turns k queries into coded queries: a registered name or {"cls": ..., **kwargs}
    decoder: SpecType = "subtraction"  # rebuilds unavailable outputs from the rest: a registered name or {"cls": ..., **kwargs}
    systematic: Optional[bool] = None  # raw queries go to F and r coded queries to extra workers; None = the encoder's default (berrut: non-systematic)
    byzantine: int = field(default=0, metadata={"min": 0, "max": CODE_MAX})  # Byzantine workers to locate and leave out (berrut; needs r >= 2E + 2*ceil((k-2)/6)); only the byzantine_* figures inject and locate them
    loss: SpecType = "mse"  # what training minimises (mse: the paper's; parity_ray/losses.py says what each measures)
    # ---- optimisation (defaults are the paper's) ----
    epochs: int = field(default=30, metadata={"min": 0})  # 0 = evaluate only (codes with nothing to train, e.g. berrut with F)
    batch_size: Optional[int] = field(default=None, metadata={"min": 1})  # groups per batch; None = 64 for k=2, else 32
    optimizer: str = "adam"  # the optimiser of the trained parts (adam: the paper's)
    lr: float = field(default=1e-3, metadata={"gt": 0})  # learning rate
    weight_decay: float = field(default=1e-5, metadata={"min": 0})  # L2 penalty of the optimiser
    momentum: float = field(default=0.9, metadata={"min": 0})  # sgd only
    lr_schedule: str = "none"  # learning-rate schedule (none: constant, the paper's; cosine: to 0 over the epochs; step: x lr_gamma every lr_step epochs)
    lr_step: int = field(default=10, metadata={"min": 1})  # epochs between learning-rate drops (lr_schedule step)
    lr_gamma: float = field(default=0.1, metadata={"gt": 0})  # factor of each drop (lr_schedule step)
    ema_decay: float = field(default=0.0, metadata={"min": 0, "lt": 1})  # per-step decay of an exponential moving average of the trained weights, used for evaluation, best.pt and predictions (0 = off)
    seed: int = field(default=0, metadata={"min": 0, "max": SEED_MAX})  # seeds init, the validation split, and every epoch's random k-groups
    # ---- data ----
    data_root: Optional[str] = None  # None = $PARITY_RAY_DATA, then the user cache
    download: bool = True  # fetch through torchvision when files are missing (needs internet)
    val_size: Optional[int] = field(default=None, metadata={"min": 1})  # images carved from the train split; None = dataset default (5000)
    input_norm: Optional[str] = None  # dataset | none | "MEANS/STDS"; None = dataset (must be stated with base_weights)
    augment: str = "none"  # training-image augmentation (crop-flip: CIFAR's, resized-crop-flip: Cats vs Dogs'); F's outputs are recomputed on the augmented images
    # ---- base model ----
    base_weights: Optional[str] = None  # import a state_dict instead of training the base model here
    base_epochs: Optional[int] = field(default=None, metadata={"min": 1})  # epochs when the platform trains the base model; None = dataset default
    base_cache: Optional[str] = None  # folder of cached trained base models; None = user cache
    # ---- run ----
    out: str = "runs"  # parent folder of run folders
    name: Optional[str] = None  # run folder name; None = derived from the config
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    eval_batch_size: int = field(default=8192, metadata={"min": 1})  # images per forward pass when evaluating
    max_train_batches: Optional[int] = field(default=None, metadata={"min": 1})  # cap batches per epoch (smoke tests)
    max_eval_groups: Optional[int] = field(default=None, metadata={"min": 1})  # cap groups per evaluation split (smoke tests)
    max_patterns: int = field(default=500, metadata={"min": 1})  # erasure patterns scored for each e (and straggler patterns for the byzantine figures): all of them while C(k + r, e) is at most this, a seeded uniform sample of this many beyond (the tables' patterns_scored_e<e>)
    max_examples: Optional[int] = field(default=None, metadata={"min": 1})  # keep the first N examples of each split, for the base model too (smoke tests: minutes, not the full data through a ResNet on a CPU)
    num_threads: Optional[int] = field(default=None, metadata={"min": 1, "max": THREADS_MAX})  # torch CPU threads; None = torch's default

    # Keys that may change between a run and its resumption without making it a different run.
    RESUMABLE_CHANGES = frozenset(
        {"epochs", "out", "name", "device", "data_root", "download", "base_cache", "num_threads", "eval_batch_size"}
    )

    # ------------------------------------------------------------------ construction
    @classmethod
    def keys(cls) -> list:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], base: Optional["TrainConfig"] = None) -> "TrainConfig":
        """Overlay ``values`` on ``base`` (or defaults), checking every key and type."""
        config = dataclasses.replace(base) if base is not None else cls()
        valid = {f.name: f for f in fields(cls)}
        for key, value in values.items():
            norm_key = key.replace("-", "_")
            if norm_key not in valid:
                raise UsageError(f"unknown config key '{key}'; {choices_hint(norm_key, valid)}")
            setattr(config, norm_key, _check_type(norm_key, value, valid[norm_key]))
        return config

    @classmethod
    def from_file(cls, path: str, base: Optional["TrainConfig"] = None) -> "TrainConfig":
        return cls.from_dict(load_config_file(path), base)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    # ------------------------------------------------------------------ defaults
    def resolved(self) -> "TrainConfig":
        """A copy with every data-dependent default filled in (what artifacts record)."""
        from .coders import default_systematic, evaluates_with_base
        from .data import get_dataset_spec

        spec = get_dataset_spec(self.dataset)
        return dataclasses.replace(
            self,
            parity_model=self.parity_model if self.parity_model is not None else (
                "base" if self.epochs == 0 and evaluates_with_base(self.encoder) else self.model),
            systematic=self.systematic if self.systematic is not None else default_systematic(self.encoder),
            batch_size=self.batch_size if self.batch_size is not None else (64 if self.k == 2 else 32),
            val_size=self.val_size if self.val_size is not None else spec.default_val_size,
            base_epochs=self.base_epochs if self.base_epochs is not None else spec.base_epochs,
            input_norm=self.input_norm if self.input_norm is not None else "dataset",
        )

    def identity(self) -> Dict[str, Any]:
        """The keys that make two configs the same run."""
        return {k: v for k, v in self.to_dict().items() if k not in self.RESUMABLE_CHANGES}

    # ------------------------------------------------------------------ validation
    def validate(self) -> "TrainConfig":
        """Check every name against its registry and every number against its range."""
        from .coders import DECODERS, ENCODERS, check_slot_layout, create_coders, is_base_worker
        from .data import get_dataset_spec, parse_input_norm
        from .losses import LOSSES
        from .models import MODELS
        from .registry import parse_spec

        check_fields(self)  # every number finite, of its type and within its field's declared range
        spec = get_dataset_spec(self.dataset)

        if spec.task not in TASKS:
            raise UsageError(f"dataset '{self.dataset}' is a {spec.task} task; the trainer runs {', '.join(list_tasks())} "
                             "datasets only for now")
        get_task(spec.task).check_config(self)
        for kind, registry, value in (
            ("model", MODELS, self.model),
            ("parity_model", MODELS, None if is_base_worker(self.parity_model) else self.parity_model),
            ("encoder", ENCODERS, self.encoder),
            ("decoder", DECODERS, self.decoder),
            ("loss", LOSSES, self.loss),
        ):
            if value is None:
                continue
            try:
                value = parse_spec(value)
                if isinstance(value, str):
                    registry.get(value)
                else:
                    registry.resolve(value)
            except UsageError as exc:  # the message names the key (parity_model's is not model's)
                if re.search(rf"\b{kind}\b", str(exc)):
                    raise
                raise UsageError(f"{kind}: {exc}") from None
        if self.name is not None and (self.name in (".", "..") or any(c in self.name for c in "/\\\0")):
            raise UsageError(f"name must be a plain folder name (no '/'), got {self.name!r}")
        _check_augmentation(self.augment, spec)
        _check_name("parity_init", self.parity_init)
        _check_name("optimizer", self.optimizer)
        _check_name("lr_schedule", self.lr_schedule)
        if self.base_weights is not None and self.input_norm is None:
            raise UsageError(
                "--base-weights needs the preprocessing the weights were trained with: "
                "--input-norm dataset|none|MEANS/STDS"
            )
        parse_input_norm(self.input_norm or "dataset", spec)
        # Building the code checks its own limits (the concatenation grid, r, which encoders a decoder reads).
        resolved = self.resolved()
        with torch.device("meta"):  # shapes and limits only: no memory for a learned encoder's weights
            encoder, decoder = create_coders(resolved, spec.input_shape, spec.num_classes)
        trains_workers = not is_base_worker(resolved.parity_model)
        check_slot_layout(encoder, resolved, reads_slots=trains_workers and bool(
            getattr(MODELS.resolve(parse_spec(resolved.parity_model))[0], "reads_slots", False)))
        if resolved.parity_init == "base" and trains_workers and spec_name(resolved.parity_model) != spec_name(resolved.model):
            raise UsageError("parity_init=base copies F's weights, so parity_model must be F's architecture (or omitted)")
        if self.epochs == 0 and (trains_workers or encoder.trainable or decoder.trainable):
            trained = [what for what, yes in (("parity models", trains_workers), ("encoder", encoder.trainable),
                                              ("decoder", decoder.trainable)) if yes]
            raise UsageError(
                f"--epochs 0 evaluates without training, but this code trains its {' and '.join(trained)}; "
                "give --epochs N, or use --parity-model base with a code that has nothing to train (e.g. berrut)"
            )
        if self.epochs > 0 and not (trains_workers or encoder.trainable or decoder.trainable):
            raise UsageError("this code has nothing to train (F on the coded queries, fixed encoder and decoder); use --epochs 0")
        return self

    def run_name(self) -> str:
        if self.name:
            return self.name
        model = spec_name(self.model).rsplit(".", 1)[-1]
        encoder = spec_name(self.encoder).rsplit(".", 1)[-1]
        decoder = spec_name(self.decoder).rsplit(".", 1)[-1]
        code = encoder if decoder in (encoder, "subtraction") else f"{encoder}-{decoder}"
        if self.systematic is False:
            code += "-ns"
        if isinstance(self.parity_model, str) and self.parity_model == "base":
            code += "-F"
        elif self.parity_model is not None and spec_name(self.parity_model) != spec_name(self.model):
            code += f"-P{spec_name(self.parity_model).rsplit('.', 1)[-1]}"  # a parity model not of F's architecture
        return f"{self.dataset}-{model}-k{self.k}-r{self.r}-{code}-{spec_name(self.loss).rsplit('.', 1)[-1]}-s{self.seed}"


def _check_augmentation(name: str, spec) -> None:
    from .augment import AUGMENTATIONS

    AUGMENTATIONS.get(name)  # unknown names: one line with the choices
    if name == "none":
        return
    if get_task(spec.task).targets_move_with_pixels:
        raise UsageError(f"augment '{name}' moves pixels, which would move '{spec.name}'s {spec.task} targets; use augment none")
    if len(spec.input_shape) != 3 or spec.input_shape[1] < 8 or spec.input_shape[2] < 8:
        raise UsageError(f"augment '{name}' needs (C, H, W) images; '{spec.name}' inputs are {tuple(spec.input_shape)}")


def field_registry(name: str):
    """The registry a :data:`REGISTERED_FIELDS` field names, with its built-ins loaded."""
    from . import augment, coders, data, initialization, losses, models, optimization  # noqa: F401 - they register
    from .registry import all_registries

    return all_registries()[REGISTERED_FIELDS[name]]


def _check_name(field_name: str, value: str) -> None:
    registry = field_registry(field_name)
    if value not in registry:
        raise UsageError(f"unknown {field_name} '{value}'; {choices_hint(value, registry.in_order())}")


def field_docs(cls=None) -> Dict[str, str]:
    """Each config field's documentation: the comment on its line in this file, the one source for
    ``--help``; a field holding a registered name gets its registry's names appended."""
    import inspect
    import re

    cls = cls or TrainConfig
    docs = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):  # a subclass's comment wins
        source = inspect.getsource(klass)
        for match in re.finditer(r"^\s+(\w+): [^=\n]+(?:=[^#\n]*)?#\s*(.+)$", source, flags=re.MULTILINE):
            docs[match.group(1)] = match.group(2).strip()
    for spec_field in fields(cls):  # the declared range, where checking reads it (``parity_ray.bounds``)
        if bound_text(spec_field.metadata):
            docs[spec_field.name] = f"{docs.get(spec_field.name, '')} ({bound_text(spec_field.metadata)})".lstrip()
    if cls is TrainConfig:
        for name in REGISTERED_FIELDS:
            docs[name] = f"{docs.get(name, '')}; registered: {', '.join(field_registry(name).in_order())}".lstrip("; ")
    return docs


def _type_name(annotation: Any) -> str:
    return str(annotation).replace("typing.", "")


def _check_type(key: str, value: Any, spec_field: dataclasses.Field) -> Any:
    """Accept ``value`` for field ``key`` if it has the declared type (ints for floats are fine)."""
    annotation = spec_field.type
    text = annotation if isinstance(annotation, str) else _type_name(annotation)
    optional = text.startswith("Optional[")
    inner = text[len("Optional[") : -1] if optional else text
    if value is None:
        if optional:
            return None
        raise UsageError(f"config key '{key}' may not be null")
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "SpecType": isinstance(value, (str, dict)),
    }.get(inner)
    if ok is None:
        raise TypeError(f"config field {key} has unsupported annotation {text}")
    if not ok:
        expected = "a name or a class-spec mapping" if inner == "SpecType" else inner
        raise UsageError(f"config key '{key}' must be {expected}, got {type(value).__name__} {value!r}")
    return float(value) if inner == "float" else value


def load_config_file(path: str) -> Dict[str, Any]:
    """Read a JSON or YAML mapping; errors name the file and the problem."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"config file '{path}' does not exist")
    text = file.read_text()
    try:
        if file.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:
        raise UsageError(f"config file '{path}' is not valid {file.suffix.lstrip('.').upper() or 'JSON'}: {exc}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise UsageError(f"config file '{path}' must hold a mapping of keys to values")
    return data


__all__ = ["REGISTERED_FIELDS", "TrainConfig", "field_docs", "load_config_file"]
