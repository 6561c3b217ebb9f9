"""``parity-ray serve``: run an experiment's run as an HTTP app in the foreground, or write the
Serve config file that runs the same app (``serve run FILE`` / ``serve deploy FILE``)."""

from __future__ import annotations

import signal
import threading
from typing import Optional

from parity_ray.errors import UsageError
from parity_ray.logs import stderr_log

from parity_ray.actors.app import APP_NAME, build_app, check_options, plan, serve_config, write_serve_config
from parity_ray.actors.options import ServeOptions  # noqa: F401 - the command's options


def run_serve(options: ServeOptions, log=stderr_log, ready: Optional[threading.Event] = None,
              stop: Optional[threading.Event] = None) -> int:
    """Serve until Ctrl-C / SIGTERM (or ``stop``); with ``write_config``, write the file and return."""
    from parity_ray.serving import resolve_run

    if not 0 < options.port < 65536:
        raise UsageError(f"--port must be in 1..65535, got {options.port}")
    if not options.route_prefix.startswith("/"):
        raise UsageError(f"--route-prefix must start with '/', got '{options.route_prefix}'")
    app_options = options.app_options()
    check_options(app_options)
    run = resolve_run(options.experiment, options.run, dataset=options.dataset, model=options.model, k=options.k)
    pools = plan(run, options.mode, options.copies)
    if options.write_config:
        config = serve_config(run, app_options, host=options.host, port=options.port, route_prefix=options.route_prefix,
                              trust_code=options.trust_code)
        write_serve_config(options.write_config, config)
        log(f"wrote {options.write_config}: run {run.run_id}, mode {options.mode}; start it with "
            f"`serve run {options.write_config}` (or `serve deploy {options.write_config}` on a running cluster)")
        return 0

    from ray import serve

    from parity_ray.ray_session import ray_running

    stop = stop or threading.Event()
    previous = {}
    try:
        with ray_running(options.address):
            if threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGINT, signal.SIGTERM):
                    previous[sig] = signal.signal(sig, lambda *_: stop.set())
            try:
                serve.start(http_options={"host": options.host, "port": options.port})
                serve.run(build_app(run, app_options), name=APP_NAME, route_prefix=options.route_prefix,
                          logging_config={"log_level": "WARNING"})
                replicas = sum(len(w) for w in pools.values())
                url = f"http://{options.host}:{options.port}{options.route_prefix}"
                log(f"serving run {run.run_id} in mode '{options.mode}' ({replicas} replicas) at {url}")
                log(f"  curl -s {url} -H 'content-type: application/json' -d '{{\"instances\": [<a "
                    f"{'x'.join(map(str, _shape(run)))} nested list, pixels in [0, 1]>]}}'")
                log("Ctrl-C stops")
                print(url, flush=True)
                if ready is not None:
                    ready.set()
                while not stop.wait(0.5):
                    pass
                log("stopping")
            finally:
                serve.shutdown()  # the apps and Serve's actors, before the Ray they run on
    finally:
        for sig, handler in previous.items():  # after Ray is down: Ctrl-C during the shutdown only sets stop
            signal.signal(sig, handler)
    return 0


def _shape(run):
    from parity_ray.data import get_dataset_spec

    return get_dataset_spec(run.config["dataset"]).input_shape
