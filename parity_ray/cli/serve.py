"""``parity-ray serve``: a run's app over HTTP on Ray Serve (foreground), or its Serve config file."""

from __future__ import annotations

import argparse

from ..actors.options import ServeOptions
from .options import add_option_flags, options_from_args


def add_parser(commands) -> argparse.ArgumentParser:
    srv = commands.add_parser("serve", help="serve a trained run over HTTP on Ray Serve (foreground; Ctrl-C stops)",
                              description="Serve a run's app: POST / {\"instances\": [...]} -> {\"predictions\": [...]}. "
                                          "With --write-config, write the Serve config file that runs the same app "
                                          "(serve run FILE / serve deploy FILE) instead.")
    add_option_flags(srv, ServeOptions)
    srv.set_defaults(func=run)
    return srv


def run(args: argparse.Namespace) -> int:
    from parity_ray.actors.serve import run_serve

    return run_serve(options_from_args(ServeOptions, args, trust_code=args.trust_code))
