"""``parity-ray export``: a run's trained parts as plain state_dicts with their build records."""

from __future__ import annotations

import argparse
import json

from ..errors import UsageError


def add_parser(commands) -> argparse.ArgumentParser:
    export = commands.add_parser("export", help="write a run's parity models (and learned coders) as plain state_dicts",
                                 description="Write each trained part of a run as <part>.pt (a state_dict, tensors only) "
                                             "and <part>.json (how to build it: registry name, kwargs, input shape, k, r, "
                                             "versions) into a new folder.")
    export.add_argument("run_dir", nargs="?", metavar="RUN", help="a run folder (parity-ray train's, or a trial's checkpoint folder)")
    export.add_argument("--experiment", help="instead of RUN: an experiment folder or s3:// URI")
    export.add_argument("--run", help="with --experiment: a run id, or best (default)")
    export.add_argument("--out", required=True, help="the new folder to write (must not exist, or be empty)")
    export.add_argument("--json", action="store_true", help="print the summary as one JSON object, last on stdout")
    export.set_defaults(func=run)
    return export


def run(args: argparse.Namespace) -> int:
    from ..export import export_run, format_summary, from_experiment, from_run_dir

    if bool(args.run_dir) == bool(args.experiment):
        raise UsageError("export needs a run folder (RUN) or --experiment E [--run best|ID], not both")
    if args.run_dir and args.run is not None:
        raise UsageError("--run picks a run of --experiment; with a run folder leave it out")
    source = from_run_dir(args.run_dir) if args.run_dir else from_experiment(args.experiment, args.run or "best")
    summary = export_run(source, args.out)
    print(format_summary(summary))
    if args.json:
        print(json.dumps(summary, sort_keys=True, default=str))
    return 0
