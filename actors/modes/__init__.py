"""Serving modes: a registry. Each mode declares the replicas it needs and how it answers a query.

A mode is one file in this package::

    @register_mode("my-mode")
    class MyMode(ServingMode):
        @classmethod
        def workers(cls, layout, has_parity):       # which replicas the app deploys
            return {"base": [BASE] * layout.n}
        async def answer(self, query_id, query):   # one query's answer (a dict, see `answer_record`)
            ...

A mode is written once. It talks only to a :class:`Routing` (a replica from :meth:`Routing.pick`,
a request through :meth:`Routing.send`, a future of its output) and reads time from the running
asyncio loop (:func:`clock`). On Ray Serve the routing is the app's frontend
(``actors.frontend.Frontend``) and the loop the replica's own; in ``parity-ray sweep`` the very same
coroutines run on a simulated clock (``actors.sweep.engine``: a virtual-time event loop, replicas
simulated as queues). Every answer ends as ``direct``, ``decoded`` or ``failed`` (with a reason).
Every module of this package is imported when modes are listed, so a new mode is one new file.
"""

from __future__ import annotations

import asyncio
import collections
import importlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from parity_ray.errors import UsageError
from parity_ray.registry import Registry

MODES: Registry = Registry("serving mode", "modes", """
    A :class:`ServingMode` subclass. ``workers(layout, has_parity)`` (class method) returns the
    replica pools the app deploys; the frontend builds one instance per app with
    ``(frontend, options)`` and awaits ``answer(query_id, query)`` for each query, which returns an
    :func:`answer_record` dict (``direct``, ``decoded`` or ``failed``). ``rank`` orders modes in
    defaults and tables; ``simulated_by_default`` puts a mode in ``parity-ray simulate``'s default
    set; ``single_copy`` marks modes whose queries each make one request (service-time fits use them).""")
register_mode = MODES.register

BASE: Tuple[str, int] = ("base", 0)  # a replica running the deployed model F


def coded_worker(j: int) -> Tuple[str, int]:
    """A replica running coded worker j's model (a trained parity model, or F itself)."""
    return ("parity", j)


AUTO_START_MS = 50.0  # --deadline-ms auto: the deadline until enough direct answers have been seen


class AdaptiveDeadline:
    """``--deadline-ms auto``: a running high quantile of the latencies of the last ``window`` answered
    queries (seconds), as "The Tail at Scale" sets its hedging delay; the start value holds
    until ``min_samples`` answers are in, and the quantile is recomputed every ``every`` answers."""

    def __init__(self, quantile: float, start_s: float, window: int = 200, min_samples: int = 20, every: int = 10):
        self.quantile, self.value = float(quantile), float(start_s)
        self.latencies: collections.deque = collections.deque(maxlen=window)
        self.min_samples, self.every, self.since = min_samples, every, 0

    def observe(self, seconds: float) -> None:
        self.latencies.append(seconds)
        self.since += 1
        if len(self.latencies) >= self.min_samples and self.since >= self.every:
            self.value = float(np.quantile(np.fromiter(self.latencies, dtype=float), self.quantile))
            self.since = 0


def clock() -> float:
    """Now, in seconds, on the running loop's clock: what every mode times its policy by (a real
    monotonic clock on Serve, the simulated one in the sweep). Coder work is timed by wall clock."""
    return asyncio.get_running_loop().time()


class ServingMode:
    """Base class. ``frontend`` is the routing the mode sends through; ``options`` the app's options.

    ``deadline_s`` is the deadline a query arriving now gets: the configured one, or with
    ``--deadline-ms auto`` a running quantile of recent direct answers (:class:`AdaptiveDeadline`),
    fed by :meth:`observe` after every answer."""

    needs_code = False  # True: the frontend builds the run's encoder/decoder (actors.codes.GroupCode)
    requires_parity = False  # True: the run must have coded workers' models
    rank = 100  # where the mode stands in defaults and tables (lower first): coded modes, then the baselines
    simulated_by_default = True  # in `parity-ray simulate`'s default set of modes
    single_copy = False  # True: each query goes to exactly one base replica, so its latency is one service time
    needs_systematic = False  # True: the run's code must be systematic (k of the n workers run F on the raw queries)
    uses_deadline = True  # False: the mode never waits on deadline_ms (none, replication, coded-eager)
    follows_deadline = False  # True: keeps the adaptive deadline without waiting on it, for another policy time (a coded group's seal)

    def __init__(self, frontend, options: Dict[str, Any]):
        self.frontend = frontend
        self.options = options
        self.adaptive: Optional[AdaptiveDeadline] = None
        for name, value in type(self).timings(options).items():
            setattr(self, name, value)
        if options.get("deadline_ms") == "auto" and (self.uses_deadline or self.follows_deadline):
            self.adaptive = AdaptiveDeadline(options.get("deadline_quantile", 0.95), AUTO_START_MS / 1000.0)

    @property
    def deadline_s(self) -> float:
        return self.adaptive.value if self.adaptive is not None and self.uses_deadline else self._deadline_s

    @deadline_s.setter
    def deadline_s(self, value: float) -> None:
        self._deadline_s = value

    def deadline_seen_ms(self) -> Optional[float]:
        """The deadline (ms) a query arriving now is given; None for a mode that has none."""
        return self.deadline_s * 1000.0 if self.uses_deadline else None

    def observe(self, record: Dict[str, Any], seconds: float) -> None:
        """An answer's outcome: every answered query (direct, hedged or decoded) feeds the adaptive deadline.

        Feeding only the answers that beat the deadline unhedged would censor the tail: the quantile of
        what came in before the deadline lies below it, so the deadline ratchets down. Measured in the
        parm-fig9a preset (12 replicas, service median 5 ms): hedged's deadline sank to 4.9 ms, under
        the median, and 53% of its queries were duplicated. With every answer in, the deadline settles
        where about 1 - quantile of the queries are hedged or decoded ("a few percent" extra load)."""
        if self.adaptive is not None and record.get("path") in ("direct", "decoded"):
            self.adaptive.observe(seconds)

    @classmethod
    def timings(cls, options: Dict[str, Any]) -> Dict[str, float]:
        """The mode's policy times in seconds from the app's options (``deadline_ms``, ``timeout_s``, ...).

        One place for the defaults: the mode itself and the discrete-event model of ``parity-ray
        sweep`` (``actors.sweep``) both read them from here.
        """
        deadline_ms = options.get("deadline_ms", 50.0)
        return {"deadline_s": (AUTO_START_MS if deadline_ms == "auto" else float(deadline_ms)) / 1000.0,
                "timeout_s": float(options.get("timeout_s", 10.0))}

    @classmethod
    def workers(cls, layout, has_parity: bool) -> Dict[str, List[Tuple[str, int]]]:
        """Replica pools: pool name -> one ``(role, parity index)`` per replica."""
        raise NotImplementedError

    @classmethod
    def check(cls, layout, has_parity: bool) -> None:
        """Raise :class:`UsageError` when this mode cannot serve a run with this code."""
        def valid_here() -> str:
            fits = [m for m in presented_modes() if (has_parity or not MODES.get(m).requires_parity)
                    and (layout.systematic or not MODES.get(m).needs_systematic)]
            return ", ".join(fits)

        if cls.requires_parity and not has_parity:
            raise UsageError(f"mode '{cls.registry_name}' needs coded workers' models, and this run has none; "
                             f"valid modes here: {valid_here()}")
        if cls.needs_systematic and not layout.systematic:
            raise UsageError(f"mode '{cls.registry_name}' needs a systematic code (its duplicates go to base replicas); "
                             f"this run's code is not systematic; valid modes here: {valid_here()}")

    async def answer(self, query_id: int, query: np.ndarray) -> Dict[str, Any]:
        raise NotImplementedError

    def stats(self) -> Dict[str, Any]:
        return {}


def check_copies(copies) -> None:
    """``--copies``: an integer >= 1 (a UsageError otherwise)."""
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise UsageError(f"--copies must be an integer >= 1, got {copies!r}")


def deployed_pools(mode: str, layout, has_parity: bool, copies: int = 1) -> Dict[str, List[Tuple[str, int]]]:
    """The replica pools an app deploys behind one frontend: the mode's :meth:`ServingMode.workers`,
    each pool ``copies`` times over (``--copies``). Replica i of a pool runs the pool's worker
    ``i % (len(pool) // copies)``: the coded pool's replicas i, i + r, i + 2r, ... all run coded worker
    i's model (:meth:`Routing.pick_worker`). The Serve app builder and the sweep's simulated apps both
    deploy exactly these."""
    check_copies(copies)
    return {pool: list(workers) * copies for pool, workers in get_mode(mode).workers(layout, has_parity).items()}


def pick_replica(counts: Sequence[int], turn: int, exclude: Sequence[int] = ()) -> int:
    """The routing rule of every mode: the replica with the fewest requests in flight, ties in turn.

    ``counts[i]`` is replica i's requests in flight, ``turn`` the pool's pick counter (the scan
    starts at ``turn % n``, so ties rotate). -1 when every replica is excluded. The Serve frontend
    (``Frontend.pick``) and the discrete-event model of ``parity-ray sweep`` both route with it.
    """
    n = len(counts)
    best, best_count = -1, None
    for offset in range(n):
        i = (turn + offset) % n
        if i in exclude:
            continue
        if best_count is None or counts[i] < best_count:
            best, best_count = i, counts[i]
    return best


class Routing:
    """What a mode sends through: the app's replica pools and one routing rule for all of them.

    A request goes where :meth:`pick` says (:func:`pick_replica` over this frontend's requests in
    flight per replica) and :meth:`send` returns a future of its output; a request counts as in
    flight until its future is done (answered, failed or cancelled). :meth:`answer_query` takes one
    query through the mode: the deadline it was given, the adaptive deadline fed, a mode's error
    turned into a failed answer, the time it spent in the frontend (``frontend_ms``). Subclasses say how a request travels (:meth:`request`): the Serve
    frontend calls the replica's handle, the sweep's simulated frontend queues it on a simulated replica.
    """

    mode: "ServingMode"

    def __init__(self, pool_sizes: Dict[str, int]):
        self.outstanding = {name: [0] * int(size) for name, size in pool_sizes.items()}
        self.turns = {name: 0 for name in pool_sizes}

    def pick(self, pool: str, exclude: Sequence[int] = ()) -> int:
        """The replica of ``pool`` with the fewest outstanding requests (not in ``exclude``); ties in turn."""
        turn = self.turns[pool]
        self.turns[pool] = turn + 1
        best = pick_replica(self.outstanding[pool], turn, exclude)
        if best < 0:
            raise RuntimeError(f"no replica left in pool '{pool}' outside {list(exclude)}")
        return best

    def pick_worker(self, pool: str, worker: int, workers: int) -> int:
        """The least loaded replica of ``pool`` running its worker ``worker`` of ``workers``: with
        ``--copies`` c the pool holds c replicas of each (:func:`deployed_pools`), else ``worker`` itself."""
        size = len(self.outstanding[pool])
        if size == workers:
            return worker
        return self.pick(pool, exclude=[i for i in range(size) if i % workers != worker])

    def send(self, pool: str, replica: int, query: np.ndarray) -> asyncio.Future:
        """Send ``query`` to replica ``replica`` of ``pool``; a future of its output."""
        counts = self.outstanding[pool]
        counts[replica] += 1
        request = self.request(pool, replica, query)
        request.add_done_callback(lambda _done: counts.__setitem__(replica, counts[replica] - 1))
        return request

    def request(self, pool: str, replica: int, query: np.ndarray) -> asyncio.Future:
        raise NotImplementedError

    async def answer_query(self, query_id: int, query: np.ndarray) -> Dict[str, Any]:
        """One query's answer record from the mode, with the deadline (ms) it was given."""
        mode = self.mode
        deadline_ms, started = mode.deadline_seen_ms(), clock()
        try:
            record = await mode.answer(query_id, query)
        except Exception as exc:  # a bug in a mode must still answer the query, with a reason
            record = answer_record("failed", None, reason=f"frontend error: {type(exc).__name__}: {exc}"[:300])
        inside = clock() - started
        mode.observe(record, inside)
        record["deadline_ms"] = deadline_ms
        record["frontend_ms"] = inside * 1000.0  # from the frontend's taking the query to its answer (no hops)
        return record


def answer_record(path: str, replica: Optional[str], output=None, reason: Optional[str] = None, **extra) -> Dict[str, Any]:
    """One answer: ``path`` (direct/decoded/failed), what answered, the output and its class."""
    record: Dict[str, Any] = {"path": path, "replica": replica, "output": None, "prediction": None, "reason": reason,
                              "group_id": None, "position": None, "hedged": False, "coder_seconds": None,
                              # decoded: the decoder slots (0..n-1) it was rebuilt from, and the group's query ids by
                              # slot (fillers included): with the run's models, enough to recompute the answer
                              "decoded_from": None, "group_members": None}
    if output is not None:
        output = np.asarray(output, dtype=np.float32)
        record["output"], record["prediction"] = output, int(output.argmax())
    record.update(extra)
    return record


def _load_builtins() -> None:
    """Import every module of this package: each registers its modes."""
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def list_modes() -> List[str]:
    _load_builtins()
    return MODES.names()


def presented_modes() -> List[str]:
    """Every mode in the order defaults and tables present them (each mode's ``rank``, then name)."""
    _load_builtins()
    return sorted(MODES.names(), key=lambda name: (MODES.get(name).rank, name))


def default_simulation_modes() -> List[str]:
    """``parity-ray simulate``'s modes when none are named: those ``simulated_by_default``, presented in order."""
    return [name for name in presented_modes() if MODES.get(name).simulated_by_default]


def single_copy_modes() -> List[str]:
    """Modes whose queries each go to exactly one base replica: their latencies are plain service times."""
    return [name for name in presented_modes() if MODES.get(name).single_copy]


def get_mode(name: str):
    _load_builtins()
    return MODES.get(name)


__all__ = ["BASE", "MODES", "Routing", "ServingMode", "answer_record", "clock", "check_copies", "coded_worker", "default_simulation_modes", "deployed_pools",
           "get_mode", "list_modes",
           "pick_replica", "presented_modes", "register_mode", "single_copy_modes"]
