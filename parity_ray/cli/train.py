"""``parity-ray train``: one parity-model run from flags, a --config file and a --recipe."""

from __future__ import annotations

import argparse

from ..config import SMOKE_OVERRIDES, TrainConfig
from ..recipes import list_recipes
from .common import add_common_flags, add_config_flags, config_from_args, emit


def add_parser(commands) -> argparse.ArgumentParser:
    train = commands.add_parser("train", help="train one parity model run", description="Train one parity-model run.")
    train.add_argument("--config", help="JSON or YAML file of config keys (flags override it)")
    train.add_argument("--recipe", help=f"a training recipe under --config and flags ({', '.join(list_recipes())})")
    add_common_flags(train)
    add_config_flags(train)
    train.set_defaults(func=run)
    return train


def run(args: argparse.Namespace) -> int:
    from ..trainer import train

    config = config_from_args(args)
    if args.smoke_test:
        # --epochs 0 (a code with nothing to train) stays an evaluation: one epoch would be refused
        config = TrainConfig.from_dict({**SMOKE_OVERRIDES, **({"epochs": 0} if config.epochs == 0 else {})}, base=config)
    result = train(config, progress=not args.no_progress)
    emit(result.summary, args.json)
    return 0
