"""``parity-ray list``: every registry's names (and, with ``--contracts``, what an entry must be)."""

from __future__ import annotations

import argparse
import importlib
from .common import print_json
import textwrap
from typing import Dict

# The modules that build registries, on every floor. Importing them registers their built-ins;
# the names themselves come from the registries (``parity_ray.registry.all_registries``).
REGISTRY_MODULES = (
    "parity_ray.data", "parity_ray.models", "parity_ray.coders", "parity_ray.losses", "parity_ray.augment",
    "parity_ray.tasks", "parity_ray.optimization", "parity_ray.initialization", "parity_ray.recipes",
    "parity_ray.tune.tuning", "parity_ray.actors.stragglers", "parity_ray.actors.modes",
    "parity_ray.actors.sweep.service", "parity_ray.actors.sweep.presets", "parity_ray.analysis.explorer",
)


def add_parser(commands) -> argparse.ArgumentParser:
    lister = commands.add_parser("list", help="list every registry: datasets, models, coders, losses, tasks, optimizers, "
                                            "straggler models, serving modes, recipes, Tune plugins, ...")
    lister.add_argument("--json", action="store_true", help="print one JSON object: registry key -> names")
    lister.add_argument("--contracts", action="store_true", help="also print what each registry's entries are and how they are called")
    lister.set_defaults(func=run)
    return lister


def run(args: argparse.Namespace) -> int:
    kinds = registries()
    if args.json:
        print_json(kinds)
        return 0
    width = max(len(kind) for kind in kinds)
    contracts = load_registries()
    for kind, names in kinds.items():
        print(f"{kind:<{width}}  {', '.join(names)}")
        if args.contracts:
            print(textwrap.fill(contracts[kind].contract, width=100, initial_indent=" " * (width + 2),
                                subsequent_indent=" " * (width + 2)))
    return 0


def load_registries():
    """Every registry, by key, with its built-ins registered."""
    from parity_ray.actors.modes import list_modes
    from parity_ray.registry import all_registries

    for module in REGISTRY_MODULES:
        importlib.import_module(module)
    list_modes()  # loads every mode module of the package
    return all_registries()


def registries() -> Dict[str, list]:
    """Every registry's names, by key: what configs, search spaces and flags accept."""
    return {key: registry.names() for key, registry in load_registries().items()}
