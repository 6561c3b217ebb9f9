"""``parity-ray sweep``: the serving modes at cluster scale by discrete-event simulation."""

from __future__ import annotations

import argparse
from .common import print_json

from ..actors.options import SweepOptions
from .options import add_option_flags, options_from_args


def add_parser(commands) -> argparse.ArgumentParser:
    sweep = commands.add_parser(
        "sweep", help="discrete-event simulation of the serving modes at cluster scale, calibrated from a simulate run",
        description="A grid of simulated serving runs (rates x k x r x stragglers x modes x cluster sizes), the same "
                    "modes, routing and straggler models as the Serve app; rows land in <experiment>/tables/sweeps/.")
    add_option_flags(sweep, SweepOptions)
    sweep.add_argument("--json", action="store_true", help="print the summary as one JSON object, last on stdout")
    sweep.add_argument("--smoke-test", action="store_true", help="a short sweep in this process, to check the set-up")
    sweep.set_defaults(func=run)
    return sweep


def run(args: argparse.Namespace) -> int:
    from parity_ray.actors.sweep import format_row, run_sweep

    options = options_from_args(SweepOptions, args)
    summary = run_sweep(options.smoke_test() if args.smoke_test else options)
    print(f"sweep {summary['sweep_id']}  {summary['cells']} cells, {summary['queries']} simulated queries "
          f"in {summary['seconds']:.1f} s  ->  {summary['table']}")
    for row in summary["rows"]:
        print(format_row(row))
    cheapest = None
    if options.target_p999_ms is not None:  # after the table: the cheapest mode meeting the target per rate
        import pandas as pd

        from parity_ray.analysis.tables import cheapest_modes, cheapest_records, format_cheapest

        table = cheapest_modes(pd.DataFrame(summary["rows"]), options.target_p999_ms)
        for line in format_cheapest(table):  # none in a closed loop (no rate)
            print(line)
        cheapest = cheapest_records(table)
    if "preset" in summary:
        from parity_ray.actors.sweep.presets import format_headline

        preset = summary["preset"]
        print(f"preset {preset['name']}: {preset['source']}")
        print(f"  assumptions: {preset['assumptions']}")
        for line in format_headline(preset["headline"]):
            print("  " + line)
    if args.json:
        rows = [{k: v for k, v in row.items() if k not in ("settings", "versions", "service")} for row in summary["rows"]]
        print_json({**summary, "rows": rows, **({"cheapest": cheapest} if cheapest is not None else {})})
    return 0
