"""``Frontend``: the app's ingress. One query interface for every serving mode (``actors.modes``).

Two doors, one path:

* HTTP: ``POST <route prefix>`` with ``{"instances": [<input as nested lists in the dataset's
  shape, pixels in [0, 1]>, ...]}`` answers ``{"predictions": [{"class", "path", "latency_ms"},
  ...]}`` (the KServe v1 convention). A malformed body, a wrong shape, nesting deeper than the
  input's rank, anything but numbers (booleans, null, strings) or too many instances is HTTP 400 with
  one line saying what is wrong; a body longer than ``max_body_bytes`` (declared or streamed) is HTTP
  413, answered without reading the rest (``RequestReader``); a query that cannot be answered makes
  the request HTTP 503 with the reason (and the other instances' predictions).
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
import math
import os
import re
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from ray import serve
from starlette.requests import ClientDisconnect

from parity_ray.actors.modes import Routing

DEFAULT_MAX_INSTANCES = 64
RETRY_AFTER_S = "1"  # a 503's Retry-After: a dead replica is replaced, or decoded around, within seconds
JSON_BYTES_PER_VALUE = 40  # a float's longest repr in [0, 1] (0.00012345678901234567: 22) with its separator and a 2-space indent
BODY_HEADROOM_BYTES = 64 * 1024  # the envelope, brackets and whitespace of a pretty-printed body


class RequestError(ValueError):
    """A request the frontend refuses with ``status`` and ``{"error": <message>}``; the message is one line."""

    status = 400


class BadRequest(RequestError):
    """A malformed request (HTTP 400)."""


class BodyTooLarge(RequestError):
    """A body longer than the frontend takes (HTTP 413), refused before the rest of it is read."""

    status = 413


def default_max_body_bytes(input_shape: Sequence[int], max_instances: int) -> int:
    """What ``max_instances`` inputs of ``input_shape`` need as JSON text, generously, plus headroom."""
    return max_instances * math.prod(input_shape) * JSON_BYTES_PER_VALUE + BODY_HEADROOM_BYTES


_NUMBERS = bytes(range(48, 58)) + b".+-,: \t\r\n"  # numbers (but their exponents' e), separators, whitespace
# A JSON string (masked before brackets are counted); one left open runs to the end, so that every match
# attempt succeeds and the scan stays linear however the quotes and backslashes are laid out.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def _nesting_depth(body: bytes, strings: bool = True) -> int:
    """The deepest nesting of arrays and objects in ``body`` (its strings, if it may hold any with brackets,
    masked first), in C time: the brackets alone, then a running sum."""
    if strings:
        body = _STRING.sub(b'""', body)
    brackets = np.frombuffer(body.translate(None, _NOT_BRACKETS), dtype=np.uint8)
    if brackets.size == 0:
        return 0
    return int(np.cumsum(np.where((brackets == ord("[")) | (brackets == ord("{")), 1, -1)).max())


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean (true/false)"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _non_number(value: Any, rank: int) -> Optional[str]:
    """What the first leaf of the nested lists ``value`` (at most ``rank`` deep) that is not a JSON number
    is (None: there is none)."""
    if not isinstance(value, list):
        return None if type(value) in (int, float) else _describe(value)
    if rank == 0:
        return "a list nested deeper than the input's rank"
    if set(map(type, value)) <= {int, float}:
        return None
    for item in value:
        found = _non_number(item, rank - 1)
        if found is not None:
            return found
    return None


class RequestReader:
    """The HTTP door's reading: a request's body, bounded before it is parsed, to validated inputs.

    ``read`` answers 413 (``BodyTooLarge``) as soon as the declared (``content-length``) or the streamed
    length passes ``max_body_bytes``, without reading the rest; ``parse`` answers 400 (``BadRequest``)
    for anything but ``{"instances": [...]}`` of at most ``max_instances`` inputs of ``input_shape``,
    plain JSON numbers in [0, 1] (no booleans, null or strings; no nesting deeper than the input's
    rank: checked on the bytes before they are parsed, so a deep body costs no recursion).
    """

    def __init__(self, input_shape: Sequence[int], max_instances: int = DEFAULT_MAX_INSTANCES,
                 max_body_bytes: Optional[int] = None, name: str = ""):
        self.input_shape = tuple(int(n) for n in input_shape)
        self.max_instances = int(max_instances)
        self.max_body_bytes = int(max_body_bytes or default_max_body_bytes(self.input_shape, self.max_instances))
        self.shape_text = "x".join(map(str, self.input_shape))
        self.expected = f"{self.shape_text} ({name})" if name else self.shape_text
        self.max_depth = len(self.input_shape) + 2  # the object, its 'instances' list, the input's lists

    def too_large(self, size: str) -> BodyTooLarge:
        return BodyTooLarge(f"request body of {size} bytes; at most {self.max_body_bytes} (--max-body-bytes: "
                            f"{self.max_instances} instances of {self.shape_text})")

    async def read(self, request) -> bytes:
        """The body of the Starlette ``request``, refused (413) once it is longer than ``max_body_bytes``."""
        declared = request.headers.get("content-length")
        if declared is not None:
            declared = declared.strip()
            if not (declared.isascii() and declared.isdigit()):
                raise BadRequest(f"content-length header {declared[:40]!r} is not a byte count")
            if int(declared) > self.max_body_bytes:
                raise self.too_large(declared)
        chunks, total = [], 0
        try:
            async for chunk in request.stream():
                total += len(chunk)
                if total > self.max_body_bytes:
                    raise self.too_large(f"more than {self.max_body_bytes}")
                chunks.append(chunk)
        except ClientDisconnect:
            raise BadRequest("the client went away before the request body ended") from None
        return b"".join(chunks)

    def parse(self, body: bytes) -> List[np.ndarray]:
        """The inputs of a ``{"instances": [...]}`` body: float32 pixels in [0, 1] of ``input_shape``."""
        if len(body) > self.max_body_bytes:
            raise self.too_large(str(len(body)))
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(f"body is not UTF-8 text ({exc}); expected JSON {{\"instances\": [...]}}") from None
        # One pass in C leaves the brackets, strings and literals (of the usual body: its brackets and key).
        # Plain numbers in lists under the one key hold no booleans, null or strings: the per-value check
        # below is then skipped, and no string can hide a bracket.
        rest = body.translate(None, _NUMBERS)
        plain = not rest.replace(b'"instances"', b"").translate(None, b"[]{}eE")
        depth = _nesting_depth(rest, strings=False)
        if depth > self.max_depth and not plain:  # brackets in strings are no nesting: count again without them
            depth = _nesting_depth(rest, strings=True)
        if depth > self.max_depth:
            raise BadRequest(f"body nests {depth} levels of arrays/objects; at most {self.max_depth} "
                             f"({{\"instances\": [...]}} of inputs {self.expected})")
        try:
            payload = json.loads(text)
        except RecursionError:  # a backstop: the depth check above refuses deep bodies (but those hidden by "]" in strings)
            raise BadRequest(f"body nests too deeply; expected {{\"instances\": [...]}} of inputs {self.expected}") from None
        except ValueError as exc:
            raise BadRequest(f"body is not valid JSON ({exc}); expected {{\"instances\": [...]}}") from None
        if not isinstance(payload, dict) or "instances" not in payload:
            raise BadRequest("body must be a JSON object with an 'instances' list")
        instances = payload["instances"]
        if not isinstance(instances, list) or not instances:
            raise BadRequest("'instances' must be a non-empty list of inputs")
        if len(instances) > self.max_instances:
            raise BadRequest(f"{len(instances)} instances in one request; at most {self.max_instances}")
        with np.errstate(over="ignore"):  # no overflow warning per request: a value out of range is refused below
            return [self._instance(i, instance, plain) for i, instance in enumerate(instances)]

    def _instance(self, i: int, instance: Any, plain: bool) -> np.ndarray:
        """Instance ``i`` as float32 pixels, or the one-line BadRequest saying what is wrong with it."""
        found = None if plain else _non_number(instance, len(self.input_shape))  # a plain body holds no booleans, null or strings
        if found is None:
            try:
                # read at double precision and range-checked there: as float32, -1e-40 would become -0.0
                # and 1 + 1e-9 would become 1.0, both inside [0, 1] though the values sent are not
                array = np.asarray(instance, dtype=np.float64)
            except OverflowError:  # an integer past float's range
                raise self._outside(i) from None
            except (ValueError, TypeError):
                found = _non_number(instance, len(self.input_shape))
                if found is None:
                    raise BadRequest(f"instance {i} is not a numeric array of shape {self.expected}: "
                                     f"ragged or nested lists") from None
        if found is not None:
            raise BadRequest(f"instance {i} is not a numeric array of shape {self.expected}: it holds "
                             f"{found}; send numbers in [0, 1]")
        if array.shape != self.input_shape:
            got = "x".join(map(str, array.shape)) or "a scalar"
            raise BadRequest(f"instance {i} has shape {got}; expected {self.expected}")
        if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0:
            raise self._outside(i)
        return array.astype(np.float32)

    @staticmethod
    def _outside(i: int) -> BadRequest:
        return BadRequest(f"instance {i} has values outside [0, 1]; send pixel values in [0, 1] "
                          f"(the app applies the run's normalisation)")


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
        self.reader = RequestReader(self.input_shape, self.max_instances, options.get("max_body_bytes"), self.spec.name)
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
        # The caller's id names the query in its groups too: two calls sent close together may reach
        # this replica in either order, so an id of this replica's own would not be the table's.
        record = await self._answer(self._normalise(np.asarray(pixels, dtype=np.float32)), query_id)
        record["query_id"] = query_id
        return record

    async def stats(self) -> Dict[str, Any]:
        """This replica's mode counters (coded: encode/decode seconds, groups, decodes) and queries served.
        With several frontend replicas (``--frontend-replicas``) a handle call reaches one of them; the
        simulation deploys one, so its figures cover every query."""
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
            pixels = self.reader.parse(await self.reader.read(request))
        except RequestError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        queries = [self._normalise(array) for array in pixels]

        async def answered(query: np.ndarray):
            # each instance's own latency: from the request's arrival to this instance's answer
            record = await self._answer(query)
            return record, (time.perf_counter() - started) * 1000.0

        answers = await asyncio.gather(*(answered(q) for q in queries))
        predictions, failures = [], []
        for i, (record, latency_ms) in enumerate(answers):
            entry = {"class": record["prediction"], "path": record["path"], "latency_ms": round(latency_ms, 3)}
            if record["path"] == "failed":
                entry["reason"] = record["reason"]
                failures.append(f"instance {i}: {record['reason']}")
            predictions.append(entry)
        if failures:
            return JSONResponse({"error": "; ".join(failures), "predictions": predictions}, status_code=503,
                                headers={"Retry-After": RETRY_AFTER_S})
        return JSONResponse({"predictions": predictions})

    def _parse(self, body: bytes) -> List[np.ndarray]:
        """The normalised queries of a request body (``RequestReader.parse``: BadRequest/BodyTooLarge)."""
        return [self._normalise(array) for array in self.reader.parse(body)]

    # ------------------------------------------------------------------ one path
    def _normalise(self, pixels: np.ndarray) -> np.ndarray:
        return (pixels - self.mean) * self.inv_std

    async def _answer(self, query: np.ndarray, query_id: Optional[int] = None) -> Dict[str, Any]:
        """One query through the mode; ``query_id`` the caller's (the handle door), else the next of this
        replica's own (HTTP)."""
        self.served += 1
        return await self.answer_query(next(self.query_ids) if query_id is None else query_id, query)

    def check_health(self) -> None:
        return None
