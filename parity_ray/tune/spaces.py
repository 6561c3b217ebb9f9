"""Search spaces: Python modules exposing a Tune ``param_space`` plus ``defaults``.

A space module (see ``search_spaces/``) defines::

    defaults = {...}        # TrainConfig keys shared by every trial
    param_space = {         # TrainConfig keys -> value | tune.grid_search([...]) | a Tune sampler
        "cell": tune.grid_search([{"dataset": "mnist", "model": "base-mlp"}, ...]),  # coupled keys
        "k": tune.grid_search([2, 3, 4]),
    }
    num_samples = 1         # samples per grid point when the space has samplers

Grid axes are expanded here, so every cell is validated (and unregistered datasets or
models are reported as unavailable) before anything is launched; samplers stay Tune's.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..config import SMOKE_OVERRIDES, TrainConfig
from ..metrics import TUNE_METRIC
from ..errors import UsageError, choices_hint
from ..registry import parse_spec, spec_name
from .tuning import PLUGIN_KEYS, apply_override, check_metric, normalise_spec
from ..provenance import stable_hash

CELL_KEY = "cell"


@dataclass
class Cell:
    """One grid point: a full TrainConfig mapping, or the reason it cannot run here."""

    run_id: str
    config: Dict[str, Any]
    unavailable: Optional[str] = None


@dataclass
class ExpandedSpace:
    name: str
    source: str  # file the space came from
    overrides: List[str]
    cells: List[Cell]
    samplers: Dict[str, Any] = field(default_factory=dict)  # Tune domains, sampled per trial
    num_samples: int = 1
    scheduler: Optional[Dict[str, Any]] = None  # plug-in specs (parity_ray.tune.tuning), after --set
    search_alg: Optional[Dict[str, Any]] = None
    callbacks: List[Any] = field(default_factory=list)
    metric: str = TUNE_METRIC  # what the scheduler and search algorithm rank trials by (validation only)

    @property
    def runnable(self) -> List[Cell]:
        return [c for c in self.cells if c.unavailable is None]

    def fingerprint(self) -> str:
        """Identifies the grid for --resume: same cells, same samplers."""
        return stable_hash({"cells": [(c.run_id, c.config) for c in self.cells], "samplers": sorted(self.samplers),
                            "num_samples": self.num_samples, "scheduler": self.scheduler, "search_alg": self.search_alg,
                            "metric": self.metric}, 16)


def load_space_module(space: str):
    """Import a space by file path (``search_spaces/quick.py``) or by name (``quick``)."""
    path = Path(space)
    if path.suffix == ".py" or path.exists():
        if not path.is_file():
            raise UsageError(f"search space file '{space}' does not exist; valid choices: {', '.join(builtin_spaces())} or a .py path")
        # Let a space import its siblings and `search_spaces.*` relative to its own folder.
        for folder in (path.resolve().parent, path.resolve().parent.parent):
            if str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
        spec = importlib.util.spec_from_file_location(f"parity_space_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise UsageError(f"search space '{space}' failed to import: {type(exc).__name__}: {exc}") from None
        return module, str(path.resolve())
    if space not in builtin_spaces():
        raise UsageError(f"unknown search space '{space}'; {choices_hint(space, builtin_spaces())} or a .py path")
    module = importlib.import_module(f"parity_ray.search_spaces.{space}")
    return module, module.__file__


def builtin_spaces() -> List[str]:
    try:
        from parity_ray import search_spaces
    except ImportError:
        return []
    folder = Path(search_spaces.__file__).parent
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_") and p.stem != "base")


def split_override(text: str) -> Tuple[str, Any]:
    """``key=value``: value as a Python/JSON literal (``[2,3]``, ``5``, ``'mnist'``) or a bare string."""
    if "=" not in text:
        raise UsageError(f"--set '{text}' must look like key=value (e.g. --set k=[2,3] --set epochs=5)")
    key, raw = (part.strip() for part in text.split("=", 1))
    key = key.replace("-", "_")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = {"true": True, "false": False, "null": None, "none": None}.get(raw.lower(), raw)
    return key, value


def parse_override(text: str) -> Tuple[str, Any]:
    """A ``--set`` of a config key (see ``split_override``); anything else is refused with the choices."""
    key, value = split_override(text)
    if key not in TrainConfig.keys():
        raise UsageError(f"--set key '{key}' is not a config key; {choices_hint(key, list(TrainConfig.keys()) + list(PLUGIN_KEYS))}"
                         f" (or scheduler.<setting>, search_alg.<setting>)")
    return key, value


def _is_grid(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"grid_search"}


def _is_sampler(value: Any) -> bool:
    from ray.tune.search.sample import Domain

    return isinstance(value, Domain)


def expand(space: str, overrides: Sequence[str] = (), smoke_test: bool = False) -> ExpandedSpace:
    """Load a space, apply ``--set`` overrides, and expand its grid into validated cells."""
    module, source = load_space_module(space)
    defaults = dict(getattr(module, "defaults", {}))
    param_space = dict(getattr(module, "param_space", {}))
    num_samples = int(getattr(module, "num_samples", 1))
    plugins = {key: normalise_spec(getattr(module, key, None), key) for key in PLUGIN_KEYS}
    callbacks = list(getattr(module, "callbacks", []) or [])
    metric = check_metric(getattr(module, "metric", TUNE_METRIC))

    fixed, axes, samplers = dict(defaults), {}, {}
    for key, value in param_space.items():
        if key != CELL_KEY and key not in TrainConfig.keys():
            raise UsageError(f"search space '{space}' has unknown key '{key}'; {choices_hint(key, TrainConfig.keys())}")
        if _is_grid(value):
            axes[key] = list(value["grid_search"])
        elif _is_sampler(value):
            samplers[key] = value
        else:
            fixed[key] = value

    for text in overrides:
        if apply_override(plugins, *split_override(text)):
            continue
        key, value = parse_override(text)
        axes.pop(key, None)
        samplers.pop(key, None)
        fixed.pop(key, None)
        if isinstance(value, list):
            axes[key] = value
        else:
            fixed[key] = value
        if CELL_KEY in axes:  # an override wins over the same key inside coupled cells
            axes[CELL_KEY] = _dedupe([{k: v for k, v in c.items() if k != key} for c in axes[CELL_KEY]])

    if smoke_test:
        fixed.update(SMOKE_OVERRIDES)
        num_samples = 1

    names = list(axes)
    cells: List[Cell] = []
    for combo in itertools.product(*(axes[n] for n in names)) if names else [()]:
        config = dict(fixed)
        for name, value in zip(names, combo):
            if name == CELL_KEY:
                if not isinstance(value, dict):
                    raise UsageError(f"search space '{space}': every '{CELL_KEY}' entry must be a mapping, got {value!r}")
                config.update(value)
            else:
                config[name] = value
        if smoke_test:
            evaluate_only = config.get("epochs") == 0  # a code with nothing to train stays at epoch 0
            config.update(SMOKE_OVERRIDES)
            if evaluate_only:
                config["epochs"] = 0
        cells.append(_make_cell(config, space))
    cells = list({c.run_id: c for c in cells}.values())
    if plugins["search_alg"] is not None and len(cells) > 1:
        raise UsageError(
            f"search space '{space}' has a search_alg and {len(cells)} grid cells; a search algorithm samples "
            f"one cell's hyperparameters: narrow the grid with --set (e.g. --set dataset=mnist --set k=2) "
            f"or use a scheduler over the grid"
        )
    return ExpandedSpace(Path(source).stem, source, list(overrides), cells, samplers, num_samples,
                         plugins["scheduler"], plugins["search_alg"], callbacks, metric)


def _dedupe(items: List[dict]) -> List[dict]:
    seen, out = set(), []
    for item in items:
        key = stable_hash(item)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _make_cell(config: Dict[str, Any], space: str) -> Cell:
    reason = unavailable_reason(config)
    if reason is None:
        try:
            parsed = TrainConfig.from_dict(config)
            parsed.validate()
        except UsageError as exc:
            raise UsageError(f"search space '{space}' cell {_describe(config)}: {exc}") from None
        config = parsed.to_dict()
    run_id = f"{_describe(config).replace(' ', '-')}-{stable_hash(_identity(config), 8)}"
    return Cell(run_id=run_id, config=config, unavailable=reason)


# Config keys that say only where a run's data and cached base models are read from, not what the run
# is: the run id hashes them at their defaults, so the same cell has the same id with or without a
# data root (and the ids of runs that set none are those of earlier versions).
LOCATION_KEYS = {"data_root": None, "base_cache": None, "download": True}


def _identity(config: Dict[str, Any]) -> Dict[str, Any]:
    return {**config, **{key: value for key, value in LOCATION_KEYS.items() if key in config}}


def _describe(config: Dict[str, Any]) -> str:
    model = spec_name(config.get("model", "base-mlp")).rsplit(".", 1)[-1]
    encoder = spec_name(config.get("encoder", "addition")).rsplit(".", 1)[-1]
    decoder = spec_name(config.get("decoder", "subtraction")).rsplit(".", 1)[-1]
    code = encoder if decoder in (encoder, "subtraction") else f"{encoder}-{decoder}"
    if config.get("systematic") is False:
        code += "-ns"
    if config.get("parity_model") == "base":
        code += "-F"
    elif config.get("parity_model") is not None and spec_name(config["parity_model"]) != spec_name(config.get("model", "base-mlp")):
        code += f"-P{spec_name(config['parity_model']).rsplit('.', 1)[-1]}"  # as TrainConfig.run_name says it
    return f"{config.get('dataset', 'mnist')} {model} k{config.get('k', 2)} r{config.get('r', 1)} {code}"


def trainer_tasks() -> Tuple[str, ...]:
    """Dataset tasks the trainer runs: the registered tasks (``parity_ray.tasks``)."""
    from ..tasks import list_tasks

    return tuple(list_tasks())


def unavailable_reason(config: Dict[str, Any]) -> Optional[str]:
    """Why a cell cannot run here (None when it can).

    An unregistered dataset or model; a dataset whose task is not registered; or, for datasets that are never downloaded
    (speech-commands, cats-v-dogs, cub-localization), files missing from the cell's data roots
    (``data_root``, ``$PARITY_RAY_DATA``, the user cache) on the machine expanding the grid: the
    reason then names the expected files and every folder searched.
    """
    from ..data import DATASETS, missing_data_reason
    from ..models import MODELS

    dataset = config.get("dataset", TrainConfig.dataset)
    if dataset not in DATASETS:
        return f"dataset '{dataset}' is not registered here; {choices_hint(dataset, DATASETS.names())}"
    model = parse_spec(config.get("model", TrainConfig.model))
    if isinstance(model, str) and model not in MODELS:
        return f"model '{model}' is not registered here; {choices_hint(model, MODELS.names())}"
    task = DATASETS.get(dataset).task
    tasks = trainer_tasks()
    if task not in tasks:
        return (
            f"dataset '{dataset}' is a {task} task and the trainer runs {', '.join(tasks)} only "
            f"({task} runs need trainer support: its losses and metrics)"
        )
    return missing_data_reason(dataset, config.get("data_root"))
