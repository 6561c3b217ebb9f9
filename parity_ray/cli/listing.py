"""``parity-ray list``: every registry's names."""

from __future__ import annotations

import argparse
import json



def add_parser(commands) -> argparse.ArgumentParser:
    lister = commands.add_parser("list", help="list every registry: datasets, models, coders, losses, straggler models, "
                                            "augmentations, serving modes, recipes, Tune schedulers, search algorithms, callbacks")
    lister.add_argument("--json", action="store_true", help="print one JSON object")
    lister.set_defaults(func=run)
    return lister


def run(args: argparse.Namespace) -> int:
    kinds = registries()
    if args.json:
        print(json.dumps(kinds, sort_keys=True))
    else:
        width = max(len(kind) for kind in kinds)
        for kind, names in kinds.items():
            print(f"{kind:<{width}}  {', '.join(names)}")
    return 0


def registries() -> Dict[str, list]:
    """Every plugin registry's names, by kind: what configs, search spaces and flags accept."""
    from parity_ray.actors.modes import list_modes
    from parity_ray.actors.stragglers import list_stragglers

    from ..augment import list_augmentations
    from ..coders import list_decoders, list_encoders
    from ..data import list_datasets
    from ..losses import list_losses
    from ..models import list_models
    from ..recipes import list_recipes
    from ..tune.tuning import list_callbacks, list_schedulers, list_search_algs

    kinds = {
        "datasets": list_datasets(),
        "models": list_models(),
        "encoders": list_encoders(),
        "decoders": list_decoders(),
        "losses": list_losses(),
        "augmentations": list_augmentations(),
        "stragglers": list_stragglers(),
        "modes": list_modes(),
        "schedulers": list_schedulers(),
        "search_algs": list_search_algs(),
        "callbacks": list_callbacks(),
        "recipes": list_recipes(),
    }
    return kinds
