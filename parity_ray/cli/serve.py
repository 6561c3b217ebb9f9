"""``parity-ray serve``: a run's app over HTTP on Ray Serve (foreground), or its Serve config file."""

from __future__ import annotations

import argparse

from .common import add_serving_flags


def add_parser(commands) -> argparse.ArgumentParser:
    srv = commands.add_parser("serve", help="serve a trained run over HTTP on Ray Serve (foreground; Ctrl-C stops)",
                              description="Serve a run's app: POST / {\"instances\": [...]} -> {\"predictions\": [...]}. "
                                          "With --write-config, write the Serve config file that runs the same app "
                                          "(serve run FILE / serve deploy FILE) instead.")
    srv.add_argument("--experiment", required=True, help="experiment folder or s3:// URI (from parity-ray tune)")
    srv.add_argument("--run", default="best", help="a run id, or best (filtered by --dataset/--model/--k)")
    srv.add_argument("--dataset")
    srv.add_argument("--model")
    srv.add_argument("--k", type=int)
    srv.add_argument("--mode", default="coded", help="serving mode: coded, coded-hedged, replication, hedged, none")
    srv.add_argument("--host", default="127.0.0.1", help="HTTP host (0.0.0.0 for every interface)")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--route-prefix", default="/")
    srv.add_argument("--straggler", default="none", help="straggler models for a demo, as in simulate")
    add_serving_flags(srv, straggler=False)
    srv.add_argument("--max-instances", type=int, default=64, help="instances per HTTP request")
    srv.add_argument("--address", help="Ray cluster address (e.g. auto); default: start a local Ray")
    srv.add_argument("--write-config", metavar="FILE", help="write a Serve config file for this app and exit")
    srv.set_defaults(func=run)
    return srv


def run(args: argparse.Namespace) -> int:
    from parity_ray.actors.serve import ServeOptions, run_serve

    options = ServeOptions(
        experiment=args.experiment, run=args.run, dataset=args.dataset, model=args.model, k=args.k,
        mode=args.mode, host=args.host, port=args.port, route_prefix=args.route_prefix,
        deadline_ms=args.deadline_ms, hedge_deadline_ms=args.hedge_deadline_ms, group_wait_ms=args.group_wait_ms,
        timeout_s=args.timeout_s, max_batch_size=args.max_batch_size, batch_wait_ms=args.batch_wait_ms,
        cpus_per_replica=args.cpus_per_replica, gpus_per_replica=args.gpus_per_replica, straggler=args.straggler,
        seed=args.seed, max_instances=args.max_instances, address=args.address, write_config=args.write_config,
        trust_code=args.trust_code,
    )
    return run_serve(options)
