"""``Frontend``: the app's ingress. One query interface for every serving mode (``actors.modes``).

Two doors, one path:

* HTTP: ``POST <route prefix>`` with ``{"instances": [<input as nested lists in the dataset's
  shape, pixels in [0, 1]>, ...]}`` answers ``{"predictions": [{"class", "path", "latency_ms"},
  ...]}`` (the KServe v1 convention). A malformed body, a wrong shape or too many instances is
  HTTP 400 with one line saying what is wrong; a query that cannot be answered makes the request
  HTTP 503 with the reason (and the other instances' predictions).
* The handle: ``query(query_id, pixels)`` (what ``parity-ray simulate`` sends) answers one query
  with its full record (output, path, replica, group, ...).

Both normalise the pixels with the run's own normalisation and hand the query to the mode.

Routing is the same in every mode (``actors.modes.Routing``, which this frontend is): a query goes
to the replica of a pool with the fewest requests in flight from this frontend (ties taken in turn),
so a replica stuck in a slow batch is left alone by later queries in every mode, and the modes still
differ in one thing only. The sweep's simulated frontend is the same ``Routing`` with simulated replicas.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import time
from typing import Any, Dict, List

import numpy as np
from ray import serve

from parity_ray.actors.modes import Routing

DEFAULT_MAX_INSTANCES = 64


class BadRequest(ValueError):
    """A request the frontend refuses (HTTP 400); the message is one line."""


async def _resolve(response):
    return await response


@serve.deployment(max_ongoing_requests=4096)
class Frontend(Routing):
    def __init__(self, mode: str, run: Dict[str, Any], pools: Dict[str, List[Any]], options: Dict[str, Any]):
        import torch

        from parity_ray.actors.modes import get_mode
        from parity_ray.data import get_dataset_spec

        torch.set_num_threads(1)  # encode/decode are tiny; a thread pool would only contend with the replicas
        config = run["config"]
        self.spec = get_dataset_spec(config["dataset"])
        self.input_shape = tuple(self.spec.input_shape)
        norm = run["input_norm"]
        shape = (-1,) + (1,) * (len(self.input_shape) - 1)
        self.mean = np.asarray(norm["mean"], dtype=np.float32).reshape(shape)
        self.inv_std = (1.0 / np.asarray(norm["std"], dtype=np.float32)).reshape(shape)
        self.max_instances = int(options.get("max_instances", DEFAULT_MAX_INSTANCES))
        super().__init__({name: len(handles) for name, handles in pools.items()})
        self.pools = pools
        self.mode_name = mode
        mode_cls = get_mode(mode)
        self.code = None
        if mode_cls.needs_code:
            from parity_ray.actors.codes import GroupCode

            self.code = GroupCode(run)
            self.code.warm(self.input_shape, self.spec.num_classes)
        self.mode = mode_cls(self, options)
        self.query_ids = itertools.count()
        self.served = 0
        self.profiler = None
        self.cpu_started = time.process_time()
        if os.environ.get("PARITY_RAY_PROFILE_DIR"):  # a cProfile of this frontend, written by stats()
            import cProfile

            self.profiler = cProfile.Profile(time.thread_time)  # CPU time: preemption on a busy machine left out
            self.profiler.enable()
        gc.freeze()  # the start-up heap (torch, the coders) stays out of every later collection pause

    # ------------------------------------------------------------------ routing (what modes call)
    def request(self, pool: str, replica: int, query: np.ndarray) -> asyncio.Future:
        """A request to the replica's Serve handle: a future of its output."""
        return asyncio.ensure_future(_resolve(self.pools[pool][replica].remote(query)))

    # ------------------------------------------------------------------ handle door
    async def query(self, query_id: int, pixels: np.ndarray) -> Dict[str, Any]:
        """One query (pixels in [0, 1], the dataset's shape): its full answer record."""
        record = await self._answer(self._normalise(np.asarray(pixels, dtype=np.float32)))
        record["query_id"] = query_id
        return record

    async def stats(self) -> Dict[str, Any]:
        """The mode's own counters (coded: encode/decode seconds, groups, decodes) and queries served."""
        if self.profiler is not None:
            self.profiler.disable()
            path = os.path.join(os.environ["PARITY_RAY_PROFILE_DIR"], f"frontend-{self.mode_name}-{os.getpid()}.prof")
            self.profiler.dump_stats(path)
            self.profiler.enable()
        return {"mode": self.mode_name, "queries": self.served, "process_cpu_s": time.process_time() - self.cpu_started,
                **self.mode.stats()}

    async def placement(self) -> Dict[str, str]:
        """Node id of every replica: ``base:<i>`` / ``parity:<j>`` -> node."""
        names, calls = [], []
        for pool, handles in self.pools.items():
            prefix = "base" if pool == "base" else "parity"
            for i, handle in enumerate(handles):
                names.append(f"{prefix}:{i}")
                calls.append(_resolve(handle.node_id.remote()))
        return dict(zip(names, await asyncio.gather(*calls)))

    # ------------------------------------------------------------------ HTTP door
    async def __call__(self, request) -> Any:
        from starlette.responses import JSONResponse

        if request.method != "POST":
            return JSONResponse({"error": f"use POST with a JSON body {{\"instances\": [...]}}, not {request.method}"},
                                status_code=405)
        started = time.perf_counter()
        try:
            queries = self._parse(await request.body())
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        records = await asyncio.gather(*(self._answer(q) for q in queries))
        latency_ms = (time.perf_counter() - started) * 1000.0
        predictions, failures = [], []
        for i, record in enumerate(records):
            entry = {"class": record["prediction"], "path": record["path"], "latency_ms": round(latency_ms, 3)}
            if record["path"] == "failed":
                entry["reason"] = record["reason"]
                failures.append(f"instance {i}: {record['reason']}")
            predictions.append(entry)
        if failures:
            return JSONResponse({"error": "; ".join(failures), "predictions": predictions}, status_code=503)
        return JSONResponse({"predictions": predictions})

    def _parse(self, body: bytes) -> List[np.ndarray]:
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"body is not valid JSON ({exc}); expected {{\"instances\": [...]}}") from None
        if not isinstance(payload, dict) or "instances" not in payload:
            raise BadRequest("body must be a JSON object with an 'instances' list")
        instances = payload["instances"]
        if not isinstance(instances, list) or not instances:
            raise BadRequest("'instances' must be a non-empty list of inputs")
        if len(instances) > self.max_instances:
            raise BadRequest(f"{len(instances)} instances in one request; at most {self.max_instances}")
        shape = "x".join(map(str, self.input_shape))
        queries = []
        for i, instance in enumerate(instances):
            try:
                array = np.asarray(instance, dtype=np.float32)
            except (ValueError, TypeError):
                raise BadRequest(f"instance {i} is not a numeric array of shape {shape}") from None
            if array.shape != self.input_shape:
                got = "x".join(map(str, array.shape)) or "a scalar"
                raise BadRequest(f"instance {i} has shape {got}; expected {shape} ({self.spec.name})")
            if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0:
                raise BadRequest(f"instance {i} has values outside [0, 1]; send pixel values in [0, 1] "
                                 f"(the app applies the run's normalisation)")
            queries.append(self._normalise(array))
        return queries

    # ------------------------------------------------------------------ one path
    def _normalise(self, pixels: np.ndarray) -> np.ndarray:
        return (pixels - self.mean) * self.inv_std

    async def _answer(self, query: np.ndarray) -> Dict[str, Any]:
        self.served += 1
        return await self.answer_query(next(self.query_ids), query)

    def check_health(self) -> None:
        return None
