"""``parity-ray report``: the static HTML report of one experiment or of several."""

from __future__ import annotations

import argparse
import json



def add_parser(commands) -> argparse.ArgumentParser:
    report = commands.add_parser("report", help="write a static HTML report of an experiment, or of several side by side "
                                                 "(tables, charts, instance explorer, run vs run)",
                                 description="Write <PATH>/report/index.html with its charts, instance explorer and data "
                                             "files beside it; opens from disk, no server or network needed. Given "
                                             "several experiments (parity-ray report A B --out DIR), one report of them "
                                             "all: runs are named with their experiment and run vs run compares runs "
                                             "of different experiments.")
    report.add_argument("path", nargs="+", metavar="PATH",
                        help="experiment folder or s3:// URI (from parity-ray tune); several for one report of them all")
    report.add_argument("--out", help="write the report to this folder (or s3:// prefix) instead of <PATH>/report/ "
                                      "(required with several experiments)")
    report.add_argument("--max-thumbnails", type=int, default=200, metavar="N",
                        help="instance explorer: show at most N differing decodes per run with images (default 200; 0: none)")
    report.add_argument("--data-root", help="where the test images are, if not where the runs read them "
                                            "(without them the explorer lists decodes without images)")
    report.add_argument("--json", action="store_true", help="print the summary as one JSON object, last on stdout")
    report.set_defaults(func=run)
    return report


def run(args: argparse.Namespace) -> int:
    from parity_ray.analysis.report import build_report, format_summary

    path = args.path[0] if len(args.path) == 1 else args.path
    summary = build_report(path, out=args.out, max_thumbnails=args.max_thumbnails, data_root=args.data_root)
    print(format_summary(summary))
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    return 0
