"""``parity-ray simulate``: a trained run served on Ray Serve with stragglers; latency and accuracy per mode."""

from __future__ import annotations

import argparse
import json

from ..actors.modes import default_simulation_modes, presented_modes
from .common import add_common_flags, add_serving_flags


def add_parser(commands) -> argparse.ArgumentParser:
    sim = commands.add_parser("simulate", help="serve a trained run on Ray Serve with stragglers; measure latency and accuracy",
                              description="Degraded-mode serving simulation; rows land in <experiment>/tables/.")
    sim.add_argument("--experiment", required=True, help="experiment folder or s3:// URI (from parity-ray tune)")
    sim.add_argument("--run", default="best", help="a run id, or best (filtered by --dataset/--model/--k)")
    sim.add_argument("--dataset")
    sim.add_argument("--model")
    sim.add_argument("--k", type=int)
    sim.add_argument("--mode", default=",".join(default_simulation_modes()),
                     help=f"comma-separated serving modes ({', '.join(presented_modes())}), or all")
    sim.add_argument("--rate", type=float, default=50.0, help="open-loop Poisson queries/s")
    sim.add_argument("--clients", type=int, help="closed loop with N clients instead of --rate")
    sim.add_argument("--queries", type=int, default=1000)
    sim.add_argument("--warmup", type=int, default=100)
    sim.add_argument("--interleave-s", type=float,
                     help="deploy every mode at once and send each its load in turns of this many seconds "
                          "(background load then falls on every mode alike); default: one mode after another")
    add_serving_flags(sim, straggler=True)
    sim.add_argument("--data-root")
    sim.add_argument("--address", help="Ray cluster address (e.g. auto); default: start a local Ray")
    sim.add_argument("--no-resource-check", action="store_true", help="allow resources no current node has (autoscaling)")
    add_common_flags(sim)
    sim.set_defaults(func=run)
    return sim


def run(args: argparse.Namespace) -> int:
    from parity_ray.actors.modes import list_modes
    from parity_ray.actors.simulation import SimulationOptions, format_mode, run_simulation, smoke_modes

    modes = ",".join(smoke_modes()) if args.smoke_test else args.mode
    if modes == "all":
        modes = ",".join(list_modes())
    if args.smoke_test:
        args.queries, args.warmup = 8, 2
    options = SimulationOptions(
        experiment=args.experiment,
        run=args.run,
        dataset=args.dataset,
        model=args.model,
        k=args.k,
        modes=[m.strip() for m in modes.split(",") if m.strip()],
        straggler=args.straggler,
        rate=args.rate,
        clients=args.clients,
        queries=args.queries,
        warmup=args.warmup,
        interleave_s=args.interleave_s,
        deadline_ms=args.deadline_ms,
        hedge_deadline_ms=args.hedge_deadline_ms,
        group_wait_ms=args.group_wait_ms,
        timeout_s=args.timeout_s,
        max_batch_size=args.max_batch_size,
        batch_wait_ms=args.batch_wait_ms,
        cpus_per_replica=args.cpus_per_replica,
        gpus_per_replica=args.gpus_per_replica,
        data_root=args.data_root,
        seed=args.seed,
        address=args.address,
        resource_check=not args.no_resource_check,
        progress=not args.no_progress,
    )
    summary = run_simulation(options)

    print(f"simulation {summary['simulation_id']}  run {summary['run_id']}")
    for mode in summary["modes"]:
        print(format_mode(mode))
    if args.json:
        print(json.dumps(summary, sort_keys=True, default=str))
    return 0
