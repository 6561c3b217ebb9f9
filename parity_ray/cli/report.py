"""``parity-ray report``: the static HTML report of one experiment or of several."""

from __future__ import annotations

import argparse
from .common import print_json
from dataclasses import dataclass, field
from typing import List, Optional

from .options import add_option_flags, options_from_args


@dataclass
class ReportOptions:
    """What ``build_report`` (``parity_ray.analysis.report``) takes from the command line."""

    paths: List[str] = field(metadata={"positional": "+", "metavar": "PATH"})  # experiment folder or s3:// URI (from parity-ray tune); several for one report of them all
    out: Optional[str] = None  # write the report to this folder (or s3:// prefix) instead of <PATH>/report/ (required with several experiments)
    max_thumbnails: int = field(default=200, metadata={"metavar": "N", "min": 0})  # instance explorer: show at most N differing decodes per run with images (0: none)
    data_root: Optional[str] = None  # where the test images are, if not where the runs read them (without them the explorer lists decodes without images)


def add_parser(commands) -> argparse.ArgumentParser:
    report = commands.add_parser("report", help="write a static HTML report of an experiment, or of several side by side "
                                                 "(tables, charts, instance explorer, run vs run)",
                                 description="Write <PATH>/report/index.html with its charts, instance explorer and data "
                                             "files beside it; opens from disk, no server or network needed. Given "
                                             "several experiments (parity-ray report A B --out DIR), one report of them "
                                             "all: runs are named with their experiment and run vs run compares runs "
                                             "of different experiments.")
    add_option_flags(report, ReportOptions)
    report.add_argument("--json", action="store_true", help="print the summary as one JSON object, last on stdout")
    report.set_defaults(func=run)
    return report


def run(args: argparse.Namespace) -> int:
    from ..bounds import check_output_dir

    options = options_from_args(ReportOptions, args)
    check_output_dir(options.out, "--out")  # refused before anything is read or written

    from parity_ray.analysis.report import build_report, format_summary

    path = options.paths[0] if len(options.paths) == 1 else options.paths
    summary = build_report(path, out=options.out, max_thumbnails=options.max_thumbnails, data_root=options.data_root)
    print(format_summary(summary))
    if args.json:
        print_json(summary)
    return 0
