"""``parity-ray simulate``: serve a trained run on Ray Serve in degraded mode and measure it.

For each mode (coded, replication, hedged, none) the same replicas are deployed behind the
same frontend, the same straggler models are applied, and the same seeded load of real
test-set queries is sent; every answer is scored against the true label and the base
model's own prediction. Rows go to ``tables/queries.parquet`` and ``tables/simulations.parquet``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
import pandas as pd

from . import storage
from .errors import UsageError, choices_hint
from .results import SCHEMA_VERSION, VERSION_KEY, tables_uri
from .utils import library_versions, stable_hash, stderr_log

MODES = ("coded", "replication", "hedged", "none")


@dataclass
class SimulationOptions:
    experiment: str  # experiment folder or s3:// URI holding tables/
    run: str = "best"  # a run id, or "best" (highest degraded-mode accuracy, filtered below)
    dataset: Optional[str] = None
    model: Optional[str] = None
    k: Optional[int] = None
    modes: List[str] = field(default_factory=lambda: list(MODES))
    straggler: str = "none"  # actors.stragglers spec, e.g. "slow:replica=0,p=0.3,delay_ms=100"
    rate: float = 50.0  # open-loop Poisson queries per second
    clients: Optional[int] = None  # closed loop with N clients instead of a rate
    queries: int = 1000  # measured queries per mode
    warmup: int = 100  # queries sent first and left out of the statistics
    deadline_ms: float = 50.0  # coded: decode after this; hedged: duplicate after this
    group_wait_ms: float = 5.0  # coded: flush a partial group after this
    timeout_s: float = 10.0  # a query not answered by then fails
    max_batch_size: int = 16
    batch_wait_ms: float = 2.0
    cpus_per_replica: float = 0.25
    gpus_per_replica: float = 0.0
    data_root: Optional[str] = None
    seed: int = 0
    address: Optional[str] = None  # Ray cluster address (e.g. "auto"); None = start a local Ray
    resource_check: bool = True  # refuse replicas no current node can hold (turn off for autoscaling clusters)
    progress: bool = True



# --------------------------------------------------------------------------- validation


def validate(options: SimulationOptions):
    """Everything checkable before a replica is deployed; returns (run, straggler models)."""
    from actors.stragglers import parse_spec

    from .serving import resolve_run

    bad = [m for m in options.modes if m not in MODES]
    if bad or not options.modes:
        raise UsageError(f"unknown mode '{bad[0] if bad else ''}'; {choices_hint(bad[0] if bad else '', MODES)}")
    for name in ("rate", "queries", "deadline_ms", "timeout_s", "cpus_per_replica"):
        if getattr(options, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be > 0")
    if options.warmup < 0 or options.gpus_per_replica < 0:
        raise UsageError("--warmup and --gpus-per-replica must be >= 0")
    stragglers = parse_spec(options.straggler)
    run = resolve_run(options.experiment, options.run, dataset=options.dataset, model=options.model, k=options.k)
    if "coded" in options.modes and not (run.parity_checkpoint_uri and storage.exists(run.parity_checkpoint_uri)):
        raise UsageError(f"mode 'coded' needs a parity model, and run '{run.run_id}' has none; valid modes here: replication, hedged, none")
    return run, stragglers


def check_resources(options: SimulationOptions, run) -> None:
    import ray

    if not options.resource_check:
        return
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    total_cpu = sum(n["Resources"].get("CPU", 0) for n in nodes)
    best_gpu = max((n["Resources"].get("GPU", 0) for n in nodes), default=0)
    needed = (run.k + run.r) * options.cpus_per_replica
    if needed > total_cpu or options.gpus_per_replica > best_gpu:
        raise UsageError(
            f"{run.k + run.r} replicas x ({options.cpus_per_replica:g} CPU, {options.gpus_per_replica:g} GPU) do not fit "
            f"this cluster ({total_cpu:g} CPUs, largest node {best_gpu:g} GPUs); lower --cpus-per-replica/--gpus-per-replica"
        )


# --------------------------------------------------------------------------- deployment


def placement(n_slots: int) -> List[Optional[Dict[str, str]]]:
    """One label selector per slot: different nodes (failure domains) when the cluster has several."""
    import ray

    nodes = sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU", 0) > 0)
    if len(nodes) < 2:
        return [None] * n_slots
    return [{"ray.io/node-id": nodes[i % len(nodes)]} for i in range(n_slots)]


def build_app(mode: str, run, options: SimulationOptions, stragglers: List[dict]):
    from actors.frontend import CodedFrontend
    from actors.replica import ModelReplica

    k, r = run.k, run.r
    roles = [("base", 0)] * k + ([("parity", j) for j in range(r)] if mode == "coded" else [("base", 0)] * r)
    if mode == "none":
        roles = roles[:k]
    selectors = placement(len(roles))
    user_config = {"stragglers": stragglers, "seed": options.seed}
    handles = []
    for index, ((role, parity_index), selector) in enumerate(zip(roles, selectors)):
        actor_options: Dict[str, Any] = {"num_cpus": options.cpus_per_replica, "num_gpus": options.gpus_per_replica}
        if selector:
            actor_options["label_selector"] = selector
        handles.append(
            ModelReplica.options(name=f"{role}-{index}", user_config=user_config, ray_actor_options=actor_options).bind(
                run.as_dict(), role, index, len(roles), parity_index, options.max_batch_size, options.batch_wait_ms / 1000.0
            )
        )
    data = handles[:k] if mode == "coded" else handles
    parities = handles[k:] if mode == "coded" else []
    return CodedFrontend.options(name="frontend", ray_actor_options={"num_cpus": 0.1}).bind(
        mode, run.as_dict(), data, parities, options.deadline_ms / 1000.0, options.group_wait_ms / 1000.0, options.timeout_s
    )


# --------------------------------------------------------------------------- load


def generate_load(handle, inputs: np.ndarray, options: SimulationOptions, label: str = "load") -> List[Dict[str, Any]]:
    """Open-loop Poisson (or closed-loop clients) over ``inputs``; one record per query, none dropped.

    The client's own pauses must not show up as serving latency: the heap built so far (torch,
    pandas, the test set) is frozen out of the collector, and collection is off while the load runs.
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        return asyncio.run(_load(handle, inputs, options, label))
    finally:
        gc.enable()
        gc.unfreeze()


async def _load(handle, inputs: np.ndarray, options: SimulationOptions, label: str) -> List[Dict[str, Any]]:
    from tqdm.auto import tqdm

    total = len(inputs)
    bar = tqdm(total=total, desc=label, unit="query", leave=False, file=sys.stderr, disable=not options.progress)
    rng = np.random.default_rng(options.seed)
    records: List[Optional[Dict[str, Any]]] = [None] * total
    origin = time.perf_counter()

    async def send(i: int) -> None:
        sent = time.perf_counter()
        try:
            answer = await handle.remote(i, inputs[i])
        except Exception as exc:  # the frontend itself failed: still accounted for
            answer = {"query_id": i, "path": "failed", "reason": f"frontend error: {type(exc).__name__}: {exc}"[:300]}
        records[i] = {**answer, "send_s": sent - origin, "receive_s": time.perf_counter() - origin}
        bar.update(1)

    if options.clients:
        counter = iter(range(total))

        async def client() -> None:
            for i in counter:
                await send(i)

        await asyncio.gather(*(client() for _ in range(options.clients)))
    else:
        gaps = rng.exponential(1.0 / options.rate, size=total)
        tasks = []
        for i, send_at in enumerate(np.cumsum(gaps)):
            delay = origin + send_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(send(i)))
        await asyncio.gather(*tasks)
    bar.close()
    assert all(r is not None for r in records)
    return records  # type: ignore[return-value]


# --------------------------------------------------------------------------- run


def run_simulation(options: SimulationOptions, log=stderr_log) -> Dict[str, Any]:
    import ray
    from ray import serve

    from .data import load_data
    from .serving import load_model

    import logging

    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # one line per mode from us, not Serve's INFO stream
    from .experiment import init_ray

    run, stragglers = validate(options)
    owns_ray = not ray.is_initialized()
    if owns_ray:
        init_ray(options.address)
    try:
        check_resources(options, run)
        config = run.config
        norm = run.input_norm
        input_norm = "/".join(",".join(str(v) for v in norm[key]) for key in ("mean", "std"))
        data = load_data(config["dataset"], data_root=options.data_root or config.get("data_root"), download=False,
                         val_size=config["val_size"], split_seed=config["seed"], input_norm=input_norm)
        total = options.warmup + options.queries
        rng = np.random.default_rng(options.seed)
        indices = rng.choice(len(data.test_y), size=total, replace=total > len(data.test_y))
        inputs = data.test_x[indices].numpy().astype(np.float32)
        labels = data.test_y[indices].numpy()
        import torch

        with torch.no_grad():
            base_pred = load_model(run, "base")(torch.from_numpy(inputs)).argmax(1).numpy()

        simulation_id = f"sim-{time.strftime('%Y%m%d-%H%M%S')}-{stable_hash(asdict(options), 6)}"
        query_frames, summaries = [], []
        for mode in options.modes:
            app_name = f"parity-sim-{mode}"
            handle = serve.run(build_app(mode, run, options, stragglers), name=app_name, route_prefix=None,
                               logging_config={"log_level": "WARNING"})
            nodes = handle.placement.remote().result()
            log(f"{mode}: deployed on {len(set(nodes.values()))} node(s); sending {total} queries ({'closed loop, %d clients' % options.clients if options.clients else '%g qps' % options.rate})")
            started = time.perf_counter()
            records = generate_load(handle, inputs, options, mode)
            wall = time.perf_counter() - started
            serve.delete(app_name)
            frame = queries_frame(records, simulation_id, mode, run.run_id, indices, labels, base_pred, options.warmup)
            summary = summarize_mode(frame, options, mode, run, simulation_id, stragglers, wall)
            summary["replica_nodes"] = json.dumps(nodes, sort_keys=True)
            log(format_mode(summary))
            query_frames.append(frame)
            summaries.append(summary)
    finally:
        if owns_ray:
            ray.shutdown()
    append_tables(options.experiment, pd.concat(query_frames, ignore_index=True), pd.DataFrame(summaries))
    return {"simulation_id": simulation_id, "experiment": options.experiment, "run_id": run.run_id, "modes": summaries}


def queries_frame(records, simulation_id, mode, run_id, indices, labels, base_pred, warmup) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "simulation_id": simulation_id,
            "mode": mode,
            "run_id": run_id,
            "query_id": [r["query_id"] for r in records],
            "test_index": indices,
            "group_id": [r.get("group_id") for r in records],
            "position": [r.get("position") for r in records],
            "send_s": [r["send_s"] for r in records],
            "receive_s": [r["receive_s"] for r in records],
            "path": [r["path"] for r in records],
            "replica": [r.get("replica") for r in records],
            "hedged": [bool(r.get("hedged", False)) for r in records],
            "reason": [r.get("reason") for r in records],
            "label": labels,
            "base_prediction": base_pred,
            "prediction": [r.get("prediction") for r in records],
            "coder_seconds": [r.get("coder_seconds") for r in records],
            "warmup": np.arange(len(records)) < warmup,
        }
    )
    frame["latency_ms"] = (frame.receive_s - frame.send_s) * 1000.0
    answered = frame.path != "failed"
    frame["correct"] = answered & (frame.prediction == frame.label)
    frame["agrees_with_base"] = answered & (frame.prediction == frame.base_prediction)
    for column in ("group_id", "position", "prediction"):
        frame[column] = frame[column].astype("Int64")
    return frame


def summarize_mode(frame, options, mode, run, simulation_id, stragglers, wall) -> Dict[str, Any]:
    measured = frame[~frame.warmup]
    answered = measured[measured.path != "failed"]
    decoded = measured[measured.path == "decoded"]
    latency = answered.latency_ms.to_numpy()
    span = (measured.receive_s.max() - measured.send_s.min()) if len(measured) else float("nan")
    send_span = (measured.send_s.max() - measured.send_s.min()) if len(measured) > 1 else float("nan")
    counts = measured.path.value_counts().to_dict()
    pct = lambda q: float(np.percentile(latency, q)) if len(latency) else None  # noqa: E731
    return {
        "simulation_id": simulation_id,
        "mode": mode,
        "run_id": run.run_id,
        "experiment": options.experiment,
        "config": json.dumps({**{k: v for k, v in asdict(options).items() if k != "progress"}, "stragglers": stragglers,
                              "k": run.k, "r": run.r}, sort_keys=True, default=str),
        "straggler": options.straggler,
        "rate": options.rate if not options.clients else None,
        "clients": options.clients,
        "deadline_ms": options.deadline_ms,
        "sent": int(len(frame)),
        "measured": int(len(measured)),
        "direct": int(counts.get("direct", 0)),
        "decoded": int(counts.get("decoded", 0)),
        "failed": int(counts.get("failed", 0)),
        "hedged": int(measured.hedged.sum()),
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "p999_ms": pct(99.9),
        "mean_ms": float(latency.mean()) if len(latency) else None,
        "throughput_qps": float(len(answered) / span) if span and span > 0 else None,
        "offered_qps": float(len(measured) / send_span) if send_span and send_span > 0 else None,
        "accuracy": float(measured.correct.mean()) if len(measured) else None,
        "agreement_with_base": float(measured.agrees_with_base.mean()) if len(measured) else None,
        "decoded_accuracy": float(decoded.correct.mean()) if len(decoded) else None,
        "decoded_agreement_with_base": float(decoded.agrees_with_base.mean()) if len(decoded) else None,
        "frontend_coder_ms": float(measured.coder_seconds.dropna().mean() * 1000.0) if measured.coder_seconds.notna().any() else None,
        "wall_seconds": wall,
        "versions": json.dumps(library_versions(), sort_keys=True),
        "schema_version": SCHEMA_VERSION,
    }


def format_mode(s: Dict[str, Any]) -> str:
    f = lambda v: "   n/a" if v is None else f"{v:6.1f}"  # noqa: E731
    acc = "n/a" if s["accuracy"] is None else f"{s['accuracy']:.4f}"
    return (f"{s['mode']:<12} p50 {f(s['p50_ms'])}  p99 {f(s['p99_ms'])}  p99.9 {f(s['p999_ms'])} ms  "
            f"{s['throughput_qps'] or 0:6.1f} qps  accuracy {acc}  direct {s['direct']} decoded {s['decoded']} failed {s['failed']}")


def append_tables(experiment: str, queries: pd.DataFrame, simulations: pd.DataFrame) -> None:
    """Add this simulation's rows to the experiment's tables, each file rewritten atomically."""
    for name, new in (("queries", queries), ("simulations", simulations)):
        uri = storage.join(tables_uri(experiment), f"{name}.parquet")
        if storage.exists(uri):
            old = storage.read_parquet(uri).to_pandas()
            new = pd.concat([old, new], ignore_index=True)
        storage.write_parquet(new, uri, {VERSION_KEY: SCHEMA_VERSION, "parity_ray.table": name})
