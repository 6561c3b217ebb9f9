"""``parity-ray simulate``: a trained run served on Ray Serve with stragglers; latency and accuracy per mode."""

from __future__ import annotations

import argparse
from .common import print_json

from ..actors.options import SimulationOptions
from .options import add_option_flags, options_from_args


def add_parser(commands) -> argparse.ArgumentParser:
    sim = commands.add_parser("simulate", help="serve a trained run on Ray Serve with stragglers; measure latency and accuracy",
                              description="Degraded-mode serving simulation; rows land in <experiment>/tables/.")
    add_option_flags(sim, SimulationOptions)
    sim.add_argument("--json", action="store_true", help="print the summary as one JSON object, last on stdout")
    sim.add_argument("--smoke-test", action="store_true", help="a few queries through two modes, to check the set-up")
    sim.set_defaults(func=run)
    return sim


def run(args: argparse.Namespace) -> int:
    from parity_ray.actors.simulation import format_mode, format_spread, run_simulation

    options = options_from_args(SimulationOptions, args)
    summary = run_simulation(options.smoke_test() if args.smoke_test else options)
    print(f"simulation {summary['simulation_id']}  run {summary['run_id']}")
    for mode in summary["modes"]:
        print(format_mode(mode))
    if summary["repeats"] > 1:
        print(f"over {summary['repeats']} repetitions:")
        for mode, figures in summary["spread"].items():
            print(format_spread(mode, figures))
    if args.json:
        print_json(summary)
    return 0
