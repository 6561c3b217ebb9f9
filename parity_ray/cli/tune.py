"""``parity-ray tune``: a search space through Ray Tune into the experiment's Parquet tables."""

from __future__ import annotations

import argparse
import json

from ..errors import UsageError
from .common import add_common_flags


def add_parser(commands) -> argparse.ArgumentParser:
    tune = commands.add_parser("tune", help="run a search space through Ray Tune into Parquet tables",
                               description="Run a search space through Ray Tune; results land in <storage>/<name>/tables/.")
    tune.add_argument("space", help="a search_spaces name (quick, paper, concat) or a .py file")
    tune.add_argument("--name", required=True, help="experiment name (folder under --storage)")
    tune.add_argument("--storage", default="./results", help="local/NFS path or s3://bucket/prefix (default ./results)")
    tune.add_argument("--address", help="Ray cluster address (e.g. auto); default: start a local Ray")
    tune.add_argument("--cpus-per-trial", type=float, default=1.0)
    tune.add_argument("--gpus-per-trial", type=float, default=0.0, help="fractions share a GPU, e.g. 0.25")
    tune.add_argument("--max-concurrent-trials", type=int)
    tune.add_argument("--max-failures", type=int, default=2, help="retries of a failing trial from its checkpoint")
    tune.add_argument("--checkpoint-every", type=int, default=1, help="epochs between checkpoints")
    tune.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config key for every trial; a list makes it a grid axis (--set k=[2,3]); "
                           "scheduler=<name|none>, scheduler.<setting>=V, search_alg=..., search_alg.<setting>=V "
                           "change the space's Tune scheduler and search algorithm")
    tune.add_argument("--callback", action="append", default=[], metavar="SPEC",
                      help="add a Tune callback (repeatable): mlflow, wandb, tensorboard, csv, package.module.Class, or a "
                           "JSON class-spec such as '{\"cls\": \"mlflow\", \"tracking_uri\": \"file:./mlruns\"}'")
    tune.add_argument("--data-root", help="folder holding the datasets every trial reads (else $PARITY_RAY_DATA); a "
                                          "relative path is taken from where you run the command")
    tune.add_argument("--resume", action="store_true", help="continue an interrupted experiment of the same space")
    tune.add_argument("--no-resource-check", action="store_true", help="allow resources no current node has (autoscaling)")
    add_common_flags(tune)
    tune.set_defaults(func=run)
    return tune


def run(args: argparse.Namespace) -> int:
    from ..tune.experiment import TuneOptions, run_experiment

    if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0:
        raise UsageError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    if args.max_failures < 0 or args.checkpoint_every < 1:
        raise UsageError("--max-failures must be >= 0 and --checkpoint-every >= 1")
    options = TuneOptions(
        space=args.space,
        name=args.name,
        storage=args.storage,
        address=args.address,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_concurrent_trials=args.max_concurrent_trials,
        max_failures=args.max_failures,
        checkpoint_every=args.checkpoint_every,
        overrides=args.set,
        resume=args.resume,
        smoke_test=args.smoke_test,
        resource_check=not args.no_resource_check,
        progress=not args.no_progress,
        callbacks=args.callback,
        data_root=args.data_root,
    )
    summary = run_experiment(options)
    width = 14
    print(f"{'experiment':<{width}}{summary['experiment']}  ({summary['uri']})")
    print(f"{'trials':<{width}}{summary['trials']}  " + ", ".join(f"{k.lower()} {v}" for k, v in sorted(summary["status"].items())))
    if summary["best_run"]:
        val = summary.get("best_val_degraded_accuracy")
        print(f"{'best run':<{width}}{summary['best_run']}  (chosen on validation"
              f"{'' if val is None else f' {val:.4f}'}); test degraded-mode accuracy {summary['best_degraded_accuracy']:.4f}")
    print(f"{'tables':<{width}}{summary['tables']}")
    print(f"{'wall':<{width}}{summary['wall_seconds']:.1f} s")
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    return 0 if not summary["status"].get("ERROR") else 1
