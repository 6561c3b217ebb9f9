"""``parity-ray tune``: a search space through Ray Tune into the experiment's Parquet tables."""

from __future__ import annotations

import argparse
from .common import print_json

from ..tune.options import TuneOptions
from .options import add_option_flags, options_from_args


def add_parser(commands) -> argparse.ArgumentParser:
    tune = commands.add_parser("tune", help="run a search space through Ray Tune into Parquet tables",
                               description="Run a search space through Ray Tune; results land in <storage>/<name>/tables/.")
    add_option_flags(tune, TuneOptions)
    tune.add_argument("--json", action="store_true", help="print the summary as one JSON object, last on stdout")
    tune.set_defaults(func=run)
    return tune


def run(args: argparse.Namespace) -> int:
    options = options_from_args(TuneOptions, args)
    options.check()  # (run_experiment checks again) a bad value is refused before Ray and Tune are imported

    from ..tune.experiment import run_experiment

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
        print_json(summary)
    return 0 if not summary["status"].get("ERROR") else 1
