"""``parity-ray export``: a run's trained parts as plain state_dicts with their build records."""

from __future__ import annotations

import argparse
from .common import print_json
from dataclasses import dataclass, field
from typing import Optional

from ..errors import UsageError
from .options import add_option_flags, options_from_args


@dataclass(kw_only=True)
class ExportOptions:
    """Which run to export (a run folder, or an experiment's run) and where to."""

    run_dir: Optional[str] = field(default=None, metadata={"positional": "?", "metavar": "RUN"})  # a run folder (parity-ray train's, or a trial's checkpoint folder)
    experiment: Optional[str] = None  # instead of RUN: an experiment folder or s3:// URI
    run: Optional[str] = None  # with --experiment: a run id, or best (default)
    dataset: Optional[str] = None  # with --run best: the best run of this dataset (needed when the experiment has several)
    out: str  # the new folder to write (must not exist, or be empty)

    def check(self) -> None:
        if bool(self.run_dir) == bool(self.experiment):
            raise UsageError("export needs a run folder (RUN) or --experiment E [--run best|ID], not both")
        if self.run_dir and (self.run is not None or self.dataset is not None):
            raise UsageError("--run and --dataset pick a run of --experiment; with a run folder leave them out")
        from ..bounds import check_output_dir

        check_output_dir(self.out, "--out")


def add_parser(commands) -> argparse.ArgumentParser:
    export = commands.add_parser("export", help="write a run's parity models (and learned coders) as plain state_dicts",
                                 description="Write each trained part of a run as <part>.pt (a state_dict, tensors only) "
                                             "and <part>.json (how to build it: registry name, kwargs, input shape, k, r, "
                                             "versions) into a new folder.")
    add_option_flags(export, ExportOptions)
    export.add_argument("--json", action="store_true", help="print the summary as one JSON object, last on stdout")
    export.set_defaults(func=run)
    return export


def run(args: argparse.Namespace) -> int:
    from ..export import export_run, format_summary, from_experiment, from_run_dir

    options = options_from_args(ExportOptions, args)
    options.check()
    source = from_run_dir(options.run_dir) if options.run_dir else from_experiment(options.experiment, options.run or "best",
                                                                                    dataset=options.dataset)
    summary = export_run(source, options.out)
    print(format_summary(summary))
    if args.json:
        print_json(summary)
    return 0
