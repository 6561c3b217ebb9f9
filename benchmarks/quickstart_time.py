"""End-to-end time of ``parity-ray quickstart`` against its target (<= 5 min on 2 CPU cores).

Runs the command as a user would, in a fresh storage folder, and prints its wall time, each
step's share (Ray start, Tune grid, simulation, report) and the target.

    python benchmarks/quickstart_time.py [--data-root ../shared/data] [--json]
    python benchmarks/quickstart_time.py --smoke-test    # quickstart --smoke-test on digits: checks the script
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 300.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None, help="folder holding MNIST (default: ../shared/data beside the "
                        "repo; with --smoke-test: none, so the grid keeps to digits)")
    parser.add_argument("--smoke-test", action="store_true",
                        help="time `parity-ray quickstart --smoke-test` on digits: checks the script, judges nothing")
    parser.add_argument("--storage", default=None,
                        help="parent folder for the quickstart's experiment, kept afterwards (default: a temp folder, removed)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.data_root is None and not args.smoke_test:
        args.data_root = str(REPO.parent / "shared" / "data")
    if args.smoke_test and args.data_root is None:
        env.pop("PARITY_RAY_DATA", None)  # no MNIST: the quickstart keeps to its digits cells

    with (contextlib.nullcontext(args.storage) if args.storage else tempfile.TemporaryDirectory(prefix="quickstart-bench-")) \
            as storage:
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "parity_ray", "quickstart", "--storage", storage,
             *(["--data-root", args.data_root] if args.data_root else []), *(["--smoke-test"] if args.smoke_test else []),
             "--json", "--no-progress"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, text=True,  # its progress lines go straight to stderr
        )
        wall = time.perf_counter() - started
    if result.returncode != 0:
        print(f"quickstart failed (exit {result.returncode}); its output is above", file=sys.stderr)
        return result.returncode
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    print("\n".join(result.stdout.strip().splitlines()[:-1]))
    verdict = "met" if wall <= TARGET_S else "MISSED"
    if args.smoke_test:
        verdict += "; smoke test, not meaningful"
    print(f"\nquickstart end to end: {wall:.0f} s (target <= {TARGET_S:.0f} s: {verdict}); "
          + ", ".join(f"{k} {v:.0f} s" for k, v in summary["step_seconds"].items()))
    if args.json:
        print(json.dumps({"wall_seconds": wall, "target_seconds": TARGET_S, "steps": summary["step_seconds"],
                          "quickstart": summary,
                          **({"smoke_test": True} if args.smoke_test else {})}))
    return 0 if args.smoke_test or wall <= TARGET_S else 1


if __name__ == "__main__":
    from parity_ray.errors import exit_on_usage_error

    raise SystemExit(exit_on_usage_error(main))
