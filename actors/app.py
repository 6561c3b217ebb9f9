"""The app builder: one Ray Serve application for an experiment's run and a serving mode.

``build_app(run, AppOptions(mode="coded"))`` gives the application (replicas + the frontend, which
is also the HTTP ingress); ``parity-ray serve`` runs it in the foreground and ``parity-ray
simulate`` drives it through its handle. ``app_builder(args)`` is the same builder as Serve's
config files name it (``import_path: parity_ray.actors.app:app_builder``), so ``serve run serve.yaml`` and
``serve deploy serve.yaml`` start the same app; ``serve_config(...)`` writes such a file.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, Dict, List, Optional, Tuple

from parity_ray import storage
from parity_ray.errors import UsageError, choices_hint
from parity_ray.registry import trusting_stored_code
from parity_ray.serving import ServedRun, resolve_run

from parity_ray.actors.options import AppOptions

APP_NAME = "parity-ray"
IMPORT_PATH = "parity_ray.actors.app:app_builder"


def check_options(options: AppOptions) -> None:
    from parity_ray.actors.modes import check_copies, list_modes
    from parity_ray.actors.stragglers import parse_spec

    if options.mode not in list_modes():
        raise UsageError(f"unknown mode '{options.mode}'; {choices_hint(options.mode, list_modes())}")
    from parity_ray.actors.options import AUTO

    if options.deadline_ms != AUTO and not (isinstance(options.deadline_ms, (int, float)) and options.deadline_ms > 0):
        raise UsageError(f"--deadline-ms must be > 0 or '{AUTO}', got {options.deadline_ms!r}")
    if not 0 < options.deadline_quantile < 1:
        raise UsageError(f"--deadline-quantile must be in (0, 1), got {options.deadline_quantile}")
    for name in ("timeout_s", "cpus_per_replica", "max_instances"):
        if getattr(options, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be > 0")
    if options.gpus_per_replica < 0 or (options.group_wait_ms or 0) < 0 or options.batch_wait_ms < 0:
        raise UsageError("--gpus-per-replica, --group-wait-ms and --batch-wait-ms must be >= 0")
    if options.hedge_deadline_ms is not None and options.hedge_deadline_ms <= 0:
        raise UsageError("--hedge-deadline-ms must be > 0")
    if options.max_batch_size < 1:
        raise UsageError("--max-batch-size must be >= 1")
    if options.max_body_bytes is not None and not (type(options.max_body_bytes) is int and options.max_body_bytes > 0):
        raise UsageError(f"--max-body-bytes must be an integer > 0, got {options.max_body_bytes!r}")
    check_copies(options.copies)
    if isinstance(options.frontend_replicas, bool) or not isinstance(options.frontend_replicas, int) \
            or options.frontend_replicas < 1:
        raise UsageError(f"--frontend-replicas must be an integer >= 1, got {options.frontend_replicas!r}")
    parse_spec(options.straggler)


def has_coded_workers(run: ServedRun) -> bool:
    """The run can serve coded queries: trained parity models, or F itself as the coded worker."""
    if run.config.get("parity_model") == "base":
        return True
    return bool(run.parity_checkpoint_uri) and storage.exists(run.parity_checkpoint_uri)


def plan(run: ServedRun, mode: str, copies: int = 1) -> Dict[str, List[Tuple[str, int]]]:
    """The replica pools ``mode`` needs for ``run``, ``copies`` times over (checked: a UsageError when it cannot serve it)."""
    from parity_ray.actors.codes import code_layout
    from parity_ray.actors.modes import deployed_pools, get_mode

    layout = code_layout(run)
    coded = has_coded_workers(run)
    get_mode(mode).check(layout, coded)
    return deployed_pools(mode, layout, coded, copies)


def placement(n_slots: int) -> List[Optional[Dict[str, str]]]:
    """One label selector per replica: different nodes (failure domains) when the cluster has several."""
    import ray

    if not ray.is_initialized():
        return [None] * n_slots
    nodes = sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU", 0) > 0)
    if len(nodes) < 2:
        return [None] * n_slots
    return [{"ray.io/node-id": nodes[i % len(nodes)]} for i in range(n_slots)]


# The frontend's health checks, as the model replicas': a frontend that stops answering (hung, not
# dead: Serve notices a dead one at once) is replaced after seconds, not Serve's default 10 s + 30 s.
FRONTEND_HEALTH = {"health_check_period_s": 1.0, "health_check_timeout_s": 5.0}


def build_app(run: ServedRun, options: AppOptions):
    """The Serve application: the mode's replicas behind ``options.frontend_replicas`` replicas of
    ``Frontend`` (the HTTP ingress). Each frontend replica groups and codes the queries it receives;
    a handle call (``stats()``, ``placement()``) reaches one of them."""
    from parity_ray.actors.frontend import Frontend
    from parity_ray.actors.replica import ModelReplica
    from parity_ray.actors.stragglers import parse_spec

    check_options(options)
    pools = plan(run, options.mode, options.copies)
    roles = [(pool, role, parity_index) for pool, workers in pools.items() for role, parity_index in workers]
    selectors = placement(len(roles))
    user_config = {"stragglers": parse_spec(options.straggler), "seed": options.seed}
    bound: Dict[str, List[Any]] = {pool: [] for pool in pools}
    for index, ((pool, role, parity_index), selector) in enumerate(zip(roles, selectors)):
        actor_options: Dict[str, Any] = {"num_cpus": options.cpus_per_replica, "num_gpus": options.gpus_per_replica}
        if selector:
            actor_options["label_selector"] = selector
        name = f"{role}-{index}"
        bound[pool].append(
            ModelReplica.options(name=name, user_config=user_config, ray_actor_options=actor_options).bind(
                run.as_dict(), role, index, len(roles), parity_index, options.max_batch_size,
                options.batch_wait_ms / 1000.0
            )
        )
    # A frontend Serve stops (redeploy, downscale) first finishes what it holds: every query ends by
    # --timeout-s, so the drain is given longer than that (Serve's default is 20 s).
    drain_s = max(20.0, float(options.timeout_s) + 5.0)
    return Frontend.options(name="frontend", num_replicas=options.frontend_replicas, **FRONTEND_HEALTH,
                            graceful_shutdown_timeout_s=drain_s,
                            ray_actor_options={"num_cpus": options.frontend_cpus}).bind(
        options.mode, run.as_dict(), bound, options.frontend_options()
    )


# --------------------------------------------------------------------------- Serve config files


def app_builder(args: Dict[str, Any]):
    """Serve's entry point (``import_path: parity_ray.actors.app:app_builder``): ``args`` = experiment, run, and
    any :class:`AppOptions` field."""
    args = dict(args or {})
    experiment = args.pop("experiment", None)
    if not experiment:
        raise UsageError("the app's args need 'experiment' (an experiment folder or s3:// URI)")
    run_id = args.pop("run", "best")
    filters = {key: args.pop(key, None) for key in ("dataset", "model", "k")}
    trust_code = bool(args.pop("trust_code", False))  # written by `serve --write-config --trust-code` only
    known = {f.name for f in fields(AppOptions)}
    unknown = sorted(set(args) - known)
    if unknown:
        raise UsageError(f"unknown app args {unknown}; valid: experiment, run, dataset, model, k, trust_code, "
                         f"{', '.join(sorted(known))}")
    with trusting_stored_code(trust_code):
        run = resolve_run(experiment, run_id, **filters)
    return build_app(run, AppOptions(**args))


def serve_config(run: ServedRun, options: AppOptions, host: str = "0.0.0.0", port: int = 8000,
                 name: str = APP_NAME, route_prefix: str = "/", trust_code: bool = False) -> Dict[str, Any]:
    """A Serve config file's content that runs the same app (``serve run FILE`` / ``serve deploy FILE``)."""
    defaults = AppOptions()
    args: Dict[str, Any] = {"experiment": storage.canonical(run.experiment), "run": run.run_id}
    if trust_code:
        args["trust_code"] = True
    always = ("mode", "frontend_replicas")  # written even at their defaults: what the file runs, at a glance
    args.update({key: value for key, value in asdict(options).items() if value != getattr(defaults, key) or key in always})
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": host, "port": int(port)},
        "applications": [{"name": name, "route_prefix": route_prefix, "import_path": IMPORT_PATH, "args": args}],
    }


def write_serve_config(path: str, config: Dict[str, Any]) -> None:
    import yaml

    from parity_ray.atomic import atomic_write_text

    header = ("# Ray Serve config for parity-ray (written by `parity-ray serve --write-config`).\n"
              "# Start it with `serve run <this file>` (local) or `serve deploy <this file>` (a running cluster).\n")
    atomic_write_text(path, header + yaml.safe_dump(config, sort_keys=False))
