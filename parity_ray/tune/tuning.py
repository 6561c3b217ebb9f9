"""Tune plug-ins of an experiment: trial schedulers, search algorithms and callbacks (the Tune layer).

A search-space module may define, beside ``param_space``::

    scheduler = {"cls": "asha", "max_t": 20, "grace_period": 2}   # a name below or "pkg.mod.Class"
    search_alg = {"cls": "optuna"}                                 # needs the grid to be one cell
    callbacks = ["mlflow", {"cls": "my.pkg.MyCallback", "every": 5}]

``--set scheduler.grace_period=3`` changes one setting, ``--set scheduler=median`` swaps the
scheduler (its defaults), ``--set scheduler=none`` turns it off; ``--callback SPEC`` (repeatable)
adds callbacks. Every scheduler and search algorithm ranks trials by ``TUNE_METRIC`` (a validation
metric; a space may name another ``val_*`` metric with ``metric = ...``): Tune never sees a test
metric to optimise on.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from ..errors import UsageError, choices_hint
from ..metrics import TUNE_METRIC
from ..registry import Registry, call_with_accepted, import_object, parse_spec

SCHEDULERS: Registry = Registry("trial scheduler", "schedulers", """
    An import path (or class) of a ``ray.tune`` trial scheduler, built with the settings the space
    gives it as keyword arguments (never ``metric``/``mode``: Tune takes those once, from the
    experiment's validation metric); imported only when a space names it.""")
SEARCH_ALGS: Registry = Registry("search algorithm", "search_algs", """
    An import path (or class) of a ``ray.tune`` search algorithm, built like a scheduler from the
    space's settings; imported only when a space names it (optional extras such as Optuna stay
    optional).""")
CALLBACKS: Registry = Registry("Tune callback", "callbacks", """
    An import path (or class) of a ``ray.tune`` logger callback, built with the settings the space
    gives it and handed to the tuner's ``RunConfig(callbacks=...)``.""")


def _register_paths(registry: Registry, paths: Dict[str, str]) -> None:
    """Register each name by import path, imported only when used: optional integrations (Optuna,
    HyperOpt, MLflow, W&B) are extras, and a space that does not name them must not need them."""
    for name, path in paths.items():
        registry.register(name)(path)


_register_paths(SCHEDULERS, {
    "asha": "ray.tune.schedulers.ASHAScheduler",
    "hyperband": "ray.tune.schedulers.HyperBandScheduler",
    "median": "ray.tune.schedulers.MedianStoppingRule",
    "pbt": "ray.tune.schedulers.PopulationBasedTraining",
    "fifo": "ray.tune.schedulers.FIFOScheduler",
})
_register_paths(SEARCH_ALGS, {
    "optuna": "ray.tune.search.optuna.OptunaSearch",
    "hyperopt": "ray.tune.search.hyperopt.HyperOptSearch",
    "random": "ray.tune.search.BasicVariantGenerator",
})
_register_paths(CALLBACKS, {
    # Ray 2.60 ships its MLflow and W&B Tune callbacks under ray.air.integrations only (no ray.tune path)
    "mlflow": "parity_ray.tune.mlflow_logger.MLflowCallback",  # Ray's, with runs named by run id (see there)
    "wandb": "ray.air.integrations.wandb.WandbLoggerCallback",
    "tensorboard": "ray.tune.logger.TBXLoggerCallback",
    "csv": "ray.tune.logger.CSVLoggerCallback",
})

PLUGIN_KEYS = ("scheduler", "search_alg")  # the space attributes that --set may change


def trial_run_id(params: Dict[str, Any]) -> str:
    """The run id of a trial from its Tune params (``{"trial": cell, **sampled}``): the cell's id, plus a
    hash of the sampled values when a search algorithm or sampler chose some (the one definition)."""
    from ..provenance import stable_hash

    sampled = {key: value for key, value in params.items() if key != "trial"}
    return params["trial"]["run_id"] + (f"-{stable_hash(sampled, 6)}" if sampled else "")


def list_schedulers() -> List[str]:
    return SCHEDULERS.names()


def list_search_algs() -> List[str]:
    return SEARCH_ALGS.names()


def list_callbacks() -> List[str]:
    return CALLBACKS.names()


def normalise_spec(value: Any, kind: str) -> Optional[Dict[str, Any]]:
    """A plug-in spec as ``{"cls": name-or-path, **settings}``; None (or "none") turns it off."""
    if value is None or (isinstance(value, str) and value.lower() in ("none", "")):
        return None
    spec = parse_spec(value)
    return {"cls": spec} if isinstance(spec, str) else dict(spec)


def check_metric(metric: str) -> str:
    if not isinstance(metric, str) or not metric.startswith("val_"):
        raise UsageError(
            f"Tune metric '{metric}' is not a validation metric; schedulers and search algorithms rank trials "
            f"on validation metrics only (e.g. {TUNE_METRIC}, val_reconstruction_top1), never on test metrics"
        )
    return metric


def _factory(registry: Registry, name: str):
    if "." in name:
        return import_object(name, registry.kind)
    if name not in registry:
        raise UsageError(f"unknown {registry.kind} '{name}'; {choices_hint(name, registry.names())} or 'package.module.Class'")
    entry = registry.get(name)
    return import_object(entry, registry.kind) if isinstance(entry, str) else entry


def build(registry: Registry, spec: Optional[Dict[str, Any]]) -> Any:
    """Instantiate a plug-in from its spec (settings the class does not take are refused by name)."""
    if spec is None:
        return None
    settings = dict(spec)
    name = settings.pop("cls")
    for key in ("metric", "mode"):
        if key in settings:  # Tune takes these once, from TuneConfig: one ranking for the whole experiment
            raise UsageError(f"{registry.kind} '{name}' must not set '{key}'; set the space's `metric` "
                             f"(validation metrics only; default {TUNE_METRIC}) instead")
    factory = _factory(registry, name)
    try:
        return call_with_accepted(factory, settings, required=settings)
    except UsageError:
        raise
    except ImportError as exc:
        raise UsageError(f"{registry.kind} '{name}' needs a package that is not installed: {exc}") from None
    except Exception as exc:  # TypeError, ValueError, Tune's own TuneError: the settings, said in one line
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "must be installed" in message or "pip install" in message:  # Ray's integrations assert their package
            raise UsageError(f"{registry.kind} '{name}' needs a package that is not installed: {message}") from None
        raise UsageError(f"{registry.kind} '{name}' refused its settings {settings}: {message}") from None


def build_callbacks(specs: Sequence[Any]) -> List[Any]:
    return [build(CALLBACKS, normalise_spec(spec, "callback")) for spec in specs if normalise_spec(spec, "callback")]


def apply_override(plugins: Dict[str, Optional[Dict[str, Any]]], key: str, value: Any) -> bool:
    """Apply one ``--set`` to a space's plug-ins (``scheduler=...``, ``scheduler.<setting>=...``).

    Returns False when ``key`` is not a plug-in key (it is then a TrainConfig key).
    """
    head, _, setting = key.partition(".")
    if head not in PLUGIN_KEYS:
        return False
    if not setting:
        plugins[head] = normalise_spec(value, head)
        return True
    if plugins.get(head) is None:
        raise UsageError(f"--set {key}: the space has no {head}; set one first (--set {head}=<name>; choices: "
                         f"{', '.join((SCHEDULERS if head == 'scheduler' else SEARCH_ALGS).names())})")
    if setting == "cls":
        plugins[head] = {"cls": value}
    else:
        plugins[head] = {**plugins[head], setting: value}
    return True
