"""``parity-ray sweep``: the serving modes at cluster scale by discrete-event simulation."""

from __future__ import annotations

import argparse
import json

from ..actors.modes import presented_modes
from ..errors import UsageError
from .common import add_common_flags, add_serving_flags


def add_parser(commands) -> argparse.ArgumentParser:
    sweep = commands.add_parser(
        "sweep", help="discrete-event simulation of the serving modes at cluster scale, calibrated from a simulate run",
        description="A grid of simulated serving runs (rates x k x r x stragglers x modes x cluster sizes), the same "
                    "modes, routing and straggler models as the Serve app; rows land in <experiment>/tables/sweeps/.")
    sweep.add_argument("--experiment", required=True, help="experiment folder or s3:// URI (rows go to its tables/sweeps/)")
    sweep.add_argument("--run", default="best", help="the served run whose per-instance results give accuracies, or none")
    sweep.add_argument("--mode", default=",".join(presented_modes()),
                       help=f"comma-separated serving modes ({', '.join(presented_modes())}), or all")
    sweep.add_argument("--rate", default="50", help="open-loop Poisson queries/s over the whole cluster; a comma list is a grid axis")
    sweep.add_argument("--clients", type=int, help="closed loop with N clients (over the whole cluster) instead of --rate")
    sweep.add_argument("--k", help="k values (comma list); default: the run's")
    sweep.add_argument("--r", help="r values (comma list); default: the run's")
    sweep.add_argument("--straggler", default="none",
                       help="straggler specs as in simulate; several (a grid axis) separated by ';'")
    sweep.add_argument("--cluster-size", help="replicas in the cluster (comma list); default: one app of each mode")
    sweep.add_argument("--queries", type=int, default=10000, help="measured queries per cell x mode")
    sweep.add_argument("--warmup", type=int, default=100)
    sweep.add_argument("--service", help="service times by hand, e.g. lognormal:median_ms=3,sigma=0.3[,per_item_ms=0.1,busy_fraction=0.5]")
    sweep.add_argument("--calibrate", metavar="EXPERIMENT[:SIMULATION_ID]",
                       help="fit service times from a parity-ray simulate run (default: the experiment's latest)")
    sweep.add_argument("--busy-fraction", type=float, help="share of a batch's in-flight time its replica is occupied")
    sweep.add_argument("--restart-s", type=float, default=3.0, help="a crashed replica is back this long after")
    sweep.add_argument("--target-p999-ms", type=float, help="the report's p99.9 target (cheapest mode meeting it per rate)")
    sweep.add_argument("--workers", type=int, help="Ray tasks at once (default: the cluster's CPUs); 0: in this process")
    sweep.add_argument("--address", help="Ray cluster address (e.g. auto); default: start a local Ray")
    add_serving_flags(sweep, straggler=False, placement=False)
    add_common_flags(sweep)
    sweep.set_defaults(func=run)
    return sweep


def run(args: argparse.Namespace) -> int:
    from parity_ray.actors.modes import list_modes
    from parity_ray.actors.sweep import SweepOptions, format_row, run_sweep

    modes = args.mode if args.mode != "all" else ",".join(list_modes())
    queries, warmup = (2000, 50) if args.smoke_test else (args.queries, args.warmup)
    options = SweepOptions(
        experiment=args.experiment, run=None if args.run == "none" else args.run,
        modes=[m.strip() for m in modes.split(",") if m.strip()],
        rates=_list(args.rate, float, "--rate"), clients=args.clients,
        ks=_list(args.k, int, "--k") if args.k else None, rs=_list(args.r, int, "--r") if args.r else None,
        stragglers=[s.strip() for s in args.straggler.split(";") if s.strip()] or ["none"],
        cluster_sizes=_list(args.cluster_size, int, "--cluster-size") if args.cluster_size else None,
        queries=queries, warmup=warmup, service=args.service, calibrate=args.calibrate,
        busy_fraction=args.busy_fraction, deadline_ms=args.deadline_ms, hedge_deadline_ms=args.hedge_deadline_ms,
        group_wait_ms=args.group_wait_ms, timeout_s=args.timeout_s, max_batch_size=args.max_batch_size,
        batch_wait_ms=args.batch_wait_ms, restart_s=args.restart_s, target_p999_ms=args.target_p999_ms,
        seed=args.seed, workers=0 if args.smoke_test else args.workers, address=args.address,
        progress=not args.no_progress,
    )
    summary = run_sweep(options)
    print(f"sweep {summary['sweep_id']}  {summary['cells']} cells, {summary['queries']} simulated queries "
          f"in {summary['seconds']:.1f} s  ->  {summary['table']}")
    for row in summary["rows"]:
        print(format_row(row))
    if args.json:
        rows = [{k: v for k, v in row.items() if k not in ("settings", "versions", "service")} for row in summary["rows"]]
        print(json.dumps({**summary, "rows": rows}, sort_keys=True, default=str))
    return 0


def _list(text: str, kind, flag: str):
    try:
        return [kind(v.strip()) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{flag} takes comma-separated numbers, got '{text}'") from None
