"""What each serving command takes: one options class per command, built on shared ones.

``ModePolicy`` (how the modes answer) <- ``Deployment`` (what runs on Serve) <- ``AppOptions`` (one
app, also a Serve config file's ``args``) <- ``ServeOptions``; ``SimulationOptions`` builds on
``Deployment`` and ``SweepOptions`` on ``ModePolicy``. Field comments are the commands' ``--help``
(``parity_ray.cli.options`` makes the flags); each command's ``smoke_test()`` says what
``--smoke-test`` means for it. Kept apart from the engines so that reading them imports no Ray.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Union

from parity_ray.actors.modes import default_simulation_modes, presented_modes


AUTO = "auto"  # --deadline-ms auto: the deadline follows the recent direct latencies


def deadline_value(text: str) -> Union[float, str]:
    """``--deadline-ms``: milliseconds, or ``auto``."""
    if str(text).strip().lower() == AUTO:
        return AUTO
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes milliseconds or '{AUTO}', got '{text}'") from None


@dataclass
class ModePolicy:
    """How the serving modes answer: their deadlines, batching and seed. Shared by the Serve app
    (``parity-ray serve``, ``simulate``) and its discrete-event model (``parity-ray sweep``)."""

    deadline_ms: Union[float, str] = field(default=50.0, metadata={"parse": deadline_value})  # coded: decode after this; hedged: duplicate after this; auto: a running quantile (--deadline-quantile) of the recent direct answers' latencies
    deadline_quantile: float = 0.95  # with --deadline-ms auto: the quantile of the recent direct latencies the deadline follows
    hedge_deadline_ms: Optional[float] = None  # coded-hedged: duplicate after this (default 2 x deadline)
    group_wait_ms: Optional[float] = None  # coded: seal a group this long after its first query (default: half the deadline; with --deadline-ms auto, the adaptive deadline)
    timeout_s: float = 10.0  # a query not answered by then fails
    max_batch_size: int = 16  # queries a replica runs at once
    batch_wait_ms: float = 2.0  # how long a replica waits to fill a batch
    seed: int = field(default=0, metadata={"min": 0, "max": 2**32 - 1})  # seeds the straggler models' draws and the load
    copies: int = 1  # copies of the code's workers behind each frontend, which groups and routes across all of them: k x copies base replicas and copies of every coded worker (every mode deploys its own pools copies times over; the parity-models paper's 12 workers at k = 2, r = 1 are 4)


@dataclass
class Deployment(ModePolicy):
    """What is deployed on Serve besides the policy: the straggler models and each replica's resources."""

    straggler: str = "none"  # straggler models, e.g. slow:replica=0,p=0.3,delay_ms=100 (join models with +)
    cpus_per_replica: float = 0.25  # CPUs each replica reserves
    gpus_per_replica: float = 0.0  # GPUs each replica reserves (fractions share one)


@dataclass
class AppOptions(Deployment):
    """Everything the app needs besides the run; also the ``args`` of a Serve config file."""

    mode: str = "coded"  # the serving mode (parity-ray list shows them)
    frontend_cpus: float = field(default=0.1, metadata={"cli": False})  # CPUs the frontend (ingress) reserves
    max_instances: int = 64  # instances per HTTP request
    max_body_bytes: Optional[int] = None  # largest HTTP request body in bytes; a longer one (declared or streamed) is answered 413 unread (default: what --max-instances inputs of the run's shape need as JSON, 40 bytes a value, plus 64 KiB)
    frontend_replicas: int = 2  # frontend (HTTP ingress) replicas, each grouping and coding the queries it receives; with 2 or more a killed one costs only its in-flight requests (1 allowed)

    @classmethod
    def from_deployment(cls, deployment: Deployment, **extra: Any) -> "AppOptions":
        """The app options of ``deployment`` (any subclass: simulate's, serve's) plus ``extra``."""
        shared = {f.name: getattr(deployment, f.name) for f in fields(Deployment)}
        return cls(**{**shared, **extra})

    def frontend_options(self) -> Dict[str, Any]:
        keys = ("deadline_ms", "hedge_deadline_ms", "group_wait_ms", "timeout_s", "max_instances",
                "max_body_bytes")
        return {key: getattr(self, key) for key in keys}


@dataclass(kw_only=True)
class ServeOptions(AppOptions):
    """``parity-ray serve``: the app's options, the run to serve and where."""

    experiment: str = field(metadata={"required": True})  # experiment folder or s3:// URI (from parity-ray tune)
    run: str = "best"  # a run id, or best (filtered by --dataset/--model/--k)
    dataset: Optional[str] = None  # with run best: only runs of this dataset
    model: Optional[str] = None  # with run best: only runs of this base model
    k: Optional[int] = None  # with run best: only runs with this k
    host: str = "127.0.0.1"  # HTTP host (0.0.0.0 for every interface)
    port: int = 8000  # HTTP port
    route_prefix: str = "/"  # the app's route
    address: Optional[str] = None  # Ray cluster address (e.g. auto); default: start a local Ray
    write_config: Optional[str] = field(default=None, metadata={"metavar": "FILE"})  # write a Serve config file for this app and exit
    trust_code: bool = field(default=False, metadata={"cli": False})  # --trust-code: the run's stored class-specs may be imported (also by `serve run FILE`)

    def app_options(self) -> AppOptions:
        return AppOptions(**{f.name: getattr(self, f.name) for f in fields(AppOptions)})


def smoke_modes() -> List[str]:
    """``--smoke-test``'s modes: the first coded and the first uncoded default mode."""
    from parity_ray.actors.modes import get_mode

    defaults = default_simulation_modes()
    return [next(m for m in defaults if get_mode(m).needs_code), next(m for m in defaults if not get_mode(m).needs_code)]


@dataclass(kw_only=True)
class SimulationOptions(Deployment):
    """``parity-ray simulate``: the deployment (policy, stragglers, resources), the run, the modes and the load."""

    experiment: str  # experiment folder or s3:// URI (from parity-ray tune)
    run: str = "best"  # a run id, or best (highest degraded-mode accuracy, filtered by --dataset/--model/--k)
    dataset: Optional[str] = None  # with run best: only runs of this dataset
    model: Optional[str] = None  # with run best: only runs of this base model
    k: Optional[int] = None  # with run best: only runs with this k
    modes: List[str] = field(default_factory=default_simulation_modes, metadata={"flag": "--mode", "all": presented_modes})  # comma-separated serving modes, or all
    rate: float = 50.0  # open-loop Poisson queries/s
    clients: Optional[int] = None  # closed loop with N clients instead of --rate
    queries: int = 1000  # measured queries per mode
    warmup: int = 100  # queries sent first and left out of the statistics
    # Open-loop only; each mode gets the same seeded queries at the same times of its own clock.
    interleave_s: Optional[float] = None  # deploy every mode at once and send each its load in turns of this many seconds (background load then falls on every mode alike); default: one mode after another
    repeat: int = 1  # independent repetitions (fresh seeds, the modes' order rotated); each figure is reported as their median and min-max
    data_root: Optional[str] = None  # where the run's test images are, if not where the run read them
    address: Optional[str] = None  # Ray cluster address (e.g. auto); default: start a local Ray
    resource_check: bool = field(default=True, metadata={"negate": "--no-resource-check", "negate_help": "allow resources no current node has (autoscaling)"})  # refuse replicas no current node can hold
    progress: bool = field(default=True, metadata={"negate": "--no-progress", "negate_help": "no progress bars"})  # progress bars

    def app_options(self, mode: str):
        # One frontend: the measured queries all go through one handle into one frontend's groups and
        # counters (``stats()``), as in the published set-up; a second frontend would split the groups.
        return AppOptions.from_deployment(self, mode=mode, frontend_replicas=1)

    def smoke_test(self) -> "SimulationOptions":
        """``--smoke-test``: a few queries through a coded and an uncoded mode, to check the set-up
        (enough for ``sweep --calibrate`` to fit service times from)."""
        return dataclasses.replace(self, modes=smoke_modes(), queries=60, warmup=5)

    def repetition(self, index: int) -> "SimulationOptions":
        """Repetition ``index`` (0 = the options as given): seeds moved on by ``index`` (the load's send
        times and the straggler models' draws), the modes' order rotated by ``index`` places."""
        turn = index % len(self.modes) if self.modes else 0
        return dataclasses.replace(self, seed=self.seed + index, modes=self.modes[turn:] + self.modes[:turn], repeat=1)


SMOKE_SERVICE = "lognormal:median_ms=5,sigma=0.3"  # sweep --smoke-test's service times when none are given


@dataclass(kw_only=True)
class SweepOptions(ModePolicy):
    """``parity-ray sweep``: the modes' policy, the grid (rates x k x r x stragglers x modes x cluster
    sizes) and the service times."""

    experiment: str  # experiment folder or s3:// URI (rows go to its tables/sweeps/)
    run: Optional[str] = field(default="best", metadata={"none_word": "none"})  # the served run whose per-instance results give accuracies, or none
    dataset: Optional[str] = None  # with run best: only runs of this dataset
    modes: List[str] = field(default_factory=presented_modes, metadata={"flag": "--mode", "all": presented_modes})  # comma-separated serving modes, or all
    rates: List[float] = field(default_factory=lambda: [50.0], metadata={"flag": "--rate"})  # open-loop Poisson queries/s over the whole cluster; a comma list is a grid axis
    rate_per_replicas: Optional[int] = None  # the --rate values are per this many replicas, scaled to the replicas each cell deploys (a published load at any cluster size)
    clients: Optional[int] = None  # closed loop with N clients (over the whole cluster) instead of --rate
    ks: Optional[List[int]] = field(default=None, metadata={"flag": "--k"})  # k values (comma list); default: the run's
    rs: Optional[List[int]] = field(default=None, metadata={"flag": "--r"})  # r values (comma list); default: the run's
    stragglers: List[str] = field(default_factory=lambda: ["none"], metadata={"flag": "--straggler", "sep": ";"})  # straggler specs as in simulate; several (a grid axis) separated by ';'
    cluster_sizes: Optional[List[int]] = field(default=None, metadata={"flag": "--cluster-size"})  # replicas in the cluster (comma list); default: one app of each mode
    queries: int = 10000  # measured queries per cell x mode (split over its replications)
    warmup: int = 100  # queries per replication and app sent first and left out of the statistics (each app's frontend starts cold)
    replications: int = 5  # independent replications per cell (fresh seeds; Ray tasks side by side): every p50/p99/p99.9 and ratio gets a 95% interval from their spread
    ci_width: Optional[float] = None  # add replications until each cell's p99.9 interval is within this percentage of it (at most 8x --replications; the cells that stop there are named)
    service: Optional[str] = None  # service times by hand, e.g. lognormal:median_ms=3,sigma=0.3[,per_item_ms=0.1,busy_fraction=0.5]
    calibrate: Optional[str] = field(default=None, metadata={"metavar": "EXPERIMENT[:SIMULATION_ID]"})  # fit service times from a parity-ray simulate run (default: the experiment's latest)
    service_tail: str = "gpd"  # with --calibrate: the model of the measured times above their p95 (gpd: a generalized Pareto fit, draws past the largest measured time; empirical: the measured times alone)
    busy_fraction: Optional[float] = None  # share of a batch's in-flight time its replica is occupied
    restart_s: float = 3.0  # a crashed replica is back this long after
    target_p999_ms: Optional[float] = None  # the report's p99.9 target (cheapest mode meeting it per rate)
    preset: Optional[str] = None  # a published setting stated as options (those left at their defaults); its headline table is printed
    workers: Optional[int] = None  # Ray tasks at once (default: the cluster's CPUs); 0: in this process
    address: Optional[str] = None  # Ray cluster address (e.g. auto); default: start a local Ray
    progress: bool = field(default=True, metadata={"negate": "--no-progress", "negate_help": "no progress lines"})  # a line per finished cell

    def smoke_test(self) -> "SweepOptions":
        """``--smoke-test``: a short sweep in this process, to check the set-up; with neither --service
        nor --calibrate, the service times are ``SMOKE_SERVICE`` (stated in the output's ``service``)."""
        service = self.service if (self.service or self.calibrate) else SMOKE_SERVICE
        # warm-up is per app: a few each, or a 1,000-replica cell (333 apps) warms up 13x what it measures
        return dataclasses.replace(self, queries=500, warmup=3, workers=0, service=service)

    def mode_options(self) -> Dict[str, Any]:
        return {"deadline_ms": self.deadline_ms, "deadline_quantile": self.deadline_quantile,
                "hedge_deadline_ms": self.hedge_deadline_ms, "group_wait_ms": self.group_wait_ms, "timeout_s": self.timeout_s}


# --------------------------------------------------------------------------- validation
