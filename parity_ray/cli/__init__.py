"""``parity-ray`` command line: train, quickstart, tune, simulate, sweep, serve, report, export, list.

The apps' floor: one module per command, each giving ``add_parser(commands)`` (its flags) and
``run(args)`` (parse, then dispatch to an engine); ``common`` holds what they share. The CLI is
the one part of ``parity_ray`` that reaches into the Serve layer (``actors``).

Bad input ends in one line ``parity-ray: error: ...`` and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from ..errors import EXIT_USAGE, UsageError
from ..logs import LOG_LEVELS, configure_logging
from . import export, listing, quickstart, report, serve, simulate, sweep, train, tune
from .common import OneLineParser, config_from_args, format_summary, version_text

COMMANDS = (train, quickstart, tune, simulate, sweep, serve, report, export, listing)  # in --help order
READS_EXPERIMENTS = ("simulate", "sweep", "serve", "report", "export")  # the commands that take --trust-code


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="parity-ray", description="Parity models: train, tune, simulate, report.")
    parser.add_argument("--version", action="version", version=version_text())
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info",
                        help="progress lines on stderr: debug, info (default), warning, error")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for command in COMMANDS:
        command.add_parser(commands)
    for sub in commands.choices.values():  # also after the command: parity-ray train ... --log-level warning
        sub.add_argument("--log-level", choices=LOG_LEVELS, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    for name in READS_EXPERIMENTS:
        commands.choices[name].add_argument(
            "--trust-code", action="store_true",
            help="import the class-specs (user code) that the experiment's stored configs name; without it such a "
                 "run is refused (see docs/security.md). Only for experiments written by people you trust as you "
                 "trust your own code")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ..registry import trusting_stored_code

    try:
        args = build_parser().parse_args(argv)
        configure_logging(args.log_level)
        with trusting_stored_code(getattr(args, "trust_code", False)):
            return args.func(args)
    except UsageError as exc:
        print(f"parity-ray: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"parity-ray: interrupted; {interrupted_hint(list(sys.argv[1:] if argv is None else argv))}", file=sys.stderr)
        return 130


# What an interrupted command leaves: the commands that resume, and the flag that says so.
RESUMES = {"train": None, "tune": "--resume"}  # train resumes from its run folder by the same command


def interrupted_hint(argv: Sequence[str]) -> str:
    """The exact command that resumes an interrupted one, or what an interruption cost."""
    import shlex

    argv = list(argv)
    command = next((a for a in argv if a in {c.__name__.rsplit(".", 1)[-1] for c in COMMANDS} | {"list"}), None)
    if command not in RESUMES:
        return "this command does not resume: run it again to start over"
    flag = RESUMES[command]
    again = argv + ([flag] if flag and flag not in argv else [])
    return f"resume with: {shlex.join(['parity-ray', *again])}"


__all__ = ["COMMANDS", "build_parser", "config_from_args", "format_summary", "main"]
