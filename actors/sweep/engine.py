"""The discrete-event model of one app (a shard): replicas with batching, queues, stragglers and
crashes behind a frontend that runs the serving modes' own code, under an open or closed load.

Nothing of a mode is written again here. The frontend is a :class:`~actors.modes.Routing`, as on
Serve, and each query is the mode's own ``answer`` coroutine, run on :class:`VirtualLoop`: an
asyncio event loop whose clock is the simulated one, so ``asyncio.wait`` timeouts, ``call_later``
seals and the adaptive deadline behave as they do on a replica's loop, only in simulated time. What
is simulated is what lies outside the frontend's process: the replicas, their batching and
queues (a request is a future the replica's simulated batch resolves), stragglers and crashes
(``actors.stragglers.StragglerState``, stepped on the simulated clock), and the work the frontend
does between awaits: the coder's encode and decode are charged from what a Serve run measured
(``ServiceModel.encode_s`` / ``decode_s``), and while the frontend is busy with them nothing else
of it runs (replies and timers wait, as on one event loop). The client's hops to and from the
frontend (``ServiceModel.hop_draws``: the hops a calibrating run measured, from its queries'
``frontend_ms``, one draw per answer) are added to every answer, a decoded one included, and
taken out of the replicas' in-flight times. A request a mode cancels (a hedge that
lost) leaves the frontend's count at once but its replica still does the work, as on Serve.

Replicas batch as ``@serve.batch`` does: the first request to reach an idle batcher opens a window
of ``batch_wait_s``; the batch closes when the window ends or ``max_batch_size`` requests are in,
and batches run one at a time, first in first out. A batch of b requests takes an in-flight time T
drawn from the service model for size b (the batch's answers are back at the frontend T after it
starts, plus its straggler delay); the replica itself is held for ``busy_fraction`` x T plus the
straggler delay (a straggler's sleep holds the batch slot, as in ``actors.replica``). A crash
fails every request the replica holds, and the replica is back ``restart_s`` later; requests sent
meanwhile wait for it.

Events go through one binary heap; each shard is simulated alone (shards share nothing), so a
cluster of many shards is many small heaps, spread over processes by the caller.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np

from parity_ray.actors.codes import GroupCode
from parity_ray.actors.modes import Routing, deployed_pools, get_mode
from parity_ray.actors.stragglers import StragglerState

INF = float("inf")
# event kinds: the frontend's (ARRIVE, DELIVER, TIMER) wait while it is busy; the replicas' do not
ARRIVE, CLOSE, FREE, REPLY, TIMER, RESTART, REACH, DELIVER = range(8)
# answer paths
DIRECT, DECODED, FAILED = 0, 1, 2
PATHS = ("direct", "decoded", "failed")
PATH_CODES = {name: code for code, name in enumerate(PATHS)}
OUTPUT = np.zeros(2, dtype=np.float32)  # what a simulated replica answers: the modes only need its shape


class ReplicaDied(RuntimeError):
    """A simulated replica process died holding the request (the mode sees a failed request)."""


@dataclass
class ShardResult:
    send: np.ndarray  # (Q,) seconds
    answer: np.ndarray  # (Q,) seconds (the timeout for failed ones)
    path: np.ndarray  # (Q,) int8: 0 direct, 1 decoded, 2 failed
    hedged: np.ndarray  # (Q,) bool
    deadline: np.ndarray  # (Q,) ms: the deadline each query was given (NaN: the mode has none)
    requests: int  # requests sent to replicas (base + coded + duplicates)
    groups_encoded: int
    groups_skipped: int


class Replica:
    __slots__ = ("index", "window", "window_id", "queue", "busy", "down_until", "state", "held", "blocked_until")

    def __init__(self, index: int, state: StragglerState):
        self.index = index
        self.window: Optional[List[int]] = None  # request ids of the open batch window
        self.window_id = 0
        self.queue: deque = deque()  # closed batches waiting for the slot
        self.busy = False
        self.down_until = -INF
        self.state = state
        self.held: set = set()  # requests this replica holds (window, queue, running): a crash fails them
        self.blocked_until = -INF  # its model run blocks its event loop: no window closes until then


class VirtualLoop(asyncio.AbstractEventLoop):
    """An asyncio event loop on simulated time, driven by a :class:`Shard`: ``time()`` is the
    frontend's clock, ``call_at`` puts a timer on the shard's event heap, ``call_soon`` callbacks
    run when the shard drains them after each of the frontend's events. Only what the modes and
    ``asyncio.wait`` / ``wait_for`` use is here."""

    def __init__(self, shard: "Shard"):
        self.shard = shard
        self.now = 0.0
        self.ready: deque = deque()

    def time(self) -> float:
        return self.now

    def call_soon(self, callback, *args, context=None):
        handle = asyncio.Handle(callback, args, self, context)
        self.ready.append(handle)
        return handle

    def call_at(self, when, callback, *args, context=None):
        handle = asyncio.TimerHandle(when, callback, args, self, context)
        self.shard.push(when, TIMER, handle)
        return handle

    def call_later(self, delay, callback, *args, context=None):
        return self.call_at(self.now + delay, callback, *args, context=context)

    def create_future(self) -> asyncio.Future:
        return asyncio.Future(loop=self)

    def create_task(self, coro, *, name=None, context=None) -> asyncio.Task:
        return asyncio.Task(coro, loop=self, name=name, context=context)

    def drain(self) -> None:
        ready = self.ready
        while ready:
            handle = ready.popleft()
            if not handle._cancelled:
                handle._run()

    def busy(self, seconds: float) -> None:
        """The frontend computes for ``seconds`` (a coder's work): its clock moves on, nothing else of it runs."""
        self.now += seconds

    # what asyncio asks of any loop
    def get_debug(self) -> bool:
        return False

    def is_running(self) -> bool:
        return True

    def is_closed(self) -> bool:
        return False

    def _timer_handle_cancelled(self, handle) -> None:
        pass  # a cancelled timer is skipped when the heap reaches it

    def call_exception_handler(self, context) -> None:
        pass  # a failed request whose error no mode read (a cancelled hedge's): nothing to report


class SimulatedCode(GroupCode):
    """The run's code as the frontend sees it in the sweep: the same decodability rule, and encode /
    decode that cost the frontend what a Serve run measured instead of computing anything."""

    def __init__(self, layout, loop: VirtualLoop, encode_s: float, decode_s: float):
        self.layout, self.k, self.r, self.n = layout, layout.k, layout.r, layout.n
        self.systematic, self.num_coded = layout.systematic, layout.num_coded
        self.loop, self.encode_s, self.decode_s = loop, float(encode_s), float(decode_s)

    def encode_group(self, queries: np.ndarray) -> np.ndarray:
        self.loop.busy(self.encode_s)
        return np.zeros((self.num_coded,) + queries.shape[1:], dtype=np.float32)

    def decode_group(self, outputs: np.ndarray, available: np.ndarray) -> np.ndarray:
        self.loop.busy(self.decode_s)
        return np.zeros((self.k, outputs.shape[1]), dtype=np.float32)


class SimulatedFrontend(Routing):
    """The app's frontend in the sweep: Serve's routing and the mode itself; requests go to the shard's replicas."""

    def __init__(self, shard: "Shard", mode: str, options: Dict[str, Any], code: Optional[SimulatedCode]):
        super().__init__({pool: len(replicas) for pool, replicas in shard.replicas.items()})
        self.shard, self.code = shard, code
        self.mode = get_mode(mode)(self, options)

    def request(self, pool: str, replica: int, query: np.ndarray) -> asyncio.Future:
        return self.shard.send(pool, replica)


class Shard:
    """One app: its pools, its replicas and its frontend (the mode's own code), on a simulated clock."""

    def __init__(self, mode: str, layout, has_parity: bool, options: Dict[str, Any], service, stragglers: List[dict],
                 first_replica: int, n_cluster: int, seed: int, max_batch_size: int, batch_wait_s: float,
                 busy_fraction: float, restart_s: float, copies: int = 1):
        mode_cls = get_mode(mode)
        mode_cls.check(layout, has_parity)
        self.pools = deployed_pools(mode, layout, has_parity, copies)
        self.layout = layout
        self.replicas: Dict[str, List[Replica]] = {}
        index = first_replica
        for pool, workers in self.pools.items():  # base first, then coded: the app builder's numbering
            self.replicas[pool] = []
            for _worker in workers:
                self.replicas[pool].append(Replica(index, StragglerState(stragglers, index, n_cluster, seed)))
                index += 1
        self.stragglers, self.n_cluster, self.seed = stragglers, n_cluster, seed
        self.crashes = any(entry.get("kind") == "crash" for entry in stragglers)
        self.sampler = service.draws(np.random.default_rng([seed, 1_000_003, first_replica]))
        self.max_batch, self.batch_wait = int(max_batch_size), float(batch_wait_s)
        self.busy_fraction, self.restart_s = float(busy_fraction), float(restart_s)
        self.heap: list = []
        self.seq = 0
        self.loop = VirtualLoop(self)
        self.frontend_free = 0.0  # the frontend's events wait until then (it is computing)
        code = None
        if mode_cls.needs_code:
            code = SimulatedCode(layout, self.loop, getattr(service, "encode_s", 0.0), getattr(service, "decode_s", 0.0))
        self.options = options
        self.mode_name, self.code = mode, code
        # the client's hops to and from the frontend, one draw per answer (the measured ones when calibrated)
        self.hops = service.hop_draws(np.random.default_rng([seed, 2_000_003, first_replica]))
        # requests: their future, replica, whether done
        self.req_future: List[Optional[asyncio.Future]] = []
        self.req_replica: List[Replica] = []

    # ------------------------------------------------------------------ plumbing
    def push(self, time: float, kind: int, payload) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (time, self.seq, kind, payload))

    def send(self, pool: str, index: int) -> asyncio.Future:
        """A request to replica ``index`` of ``pool``, sent now on the frontend's clock: its future."""
        replica = self.replicas[pool][index]
        rid = len(self.req_future)
        future = self.loop.create_future()
        self.req_future.append(future)
        self.req_replica.append(replica)
        at = self.loop.now
        if at < replica.down_until or at > self.world_now:  # restarting, or sent after the frontend's own work
            self.push(max(at, replica.down_until), REACH, rid)
        else:
            self._reach(replica, rid, at)
        return future

    def _reach(self, replica: Replica, rid: int, now: float) -> None:
        replica.held.add(rid)
        if self.crashes and replica.state.should_crash():
            self._crash(replica, now)
            return
        if replica.window is None:
            replica.window = [rid]
            replica.window_id += 1
            self.push(now + self.batch_wait, CLOSE, (replica, replica.window_id))
        else:
            replica.window.append(rid)
        if len(replica.window) >= self.max_batch:
            self._close(replica, now)

    def _close(self, replica: Replica, now: float) -> None:
        batch, replica.window = replica.window, None
        replica.window_id += 1  # the pending CLOSE event is stale now
        replica.queue.append(batch)
        if not replica.busy:
            self._start(replica, now)

    def _start(self, replica: Replica, now: float) -> None:
        batch = replica.queue.popleft()
        replica.busy = True
        flight = self.sampler.draw(len(batch))
        replica.blocked_until = now + flight * self.busy_fraction
        delay = replica.state.extra_delay(flight * self.busy_fraction, now) if replica.state.models else 0.0
        self.push(now + flight * self.busy_fraction + delay, FREE, (replica, replica.down_until))
        self.push(now + flight + delay, REPLY, (replica, batch, replica.down_until))

    def _crash(self, replica: Replica, now: float) -> None:
        """The process dies: every request it holds fails now; a new one is up ``restart_s`` later."""
        failed = sorted(replica.held)
        replica.held.clear()
        replica.window, replica.queue, replica.busy = None, deque(), False
        replica.window_id += 1
        replica.down_until = now + self.restart_s
        replica.state = StragglerState(self.stragglers, replica.index, self.n_cluster, self.seed)
        self.push(replica.down_until, RESTART, replica)
        self.push(now, REPLY, (replica, failed, None))  # the frontend hears of it as an event, not inside a send

    def _deliver(self, rid: int, ok: bool, now: float) -> None:
        """A request's answer (or failure) reaches the frontend: its future is resolved (unless cancelled)."""
        future = self.req_future[rid]
        if future is None:
            return
        self.req_future[rid] = None
        if not future.done():
            if ok:
                future.set_result(OUTPUT)
            else:
                future.set_exception(ReplicaDied(f"replica {self.req_replica[rid].index} died"))

    # ------------------------------------------------------------------ the run
    def run(self, sends: np.ndarray, clients: int = 0, timeout_s: Optional[float] = None) -> ShardResult:
        """Open loop: ``sends`` are the queries' send times. Closed loop (``clients`` > 0): ``len(sends)``
        queries, each client sending its next as soon as its last is answered."""
        total = len(sends)
        send_at = np.full(total, np.nan)
        answer = np.full(total, np.nan)
        path = np.full(total, -1, dtype=np.int8)
        hedged = np.zeros(total, dtype=bool)
        deadline = np.full(total, np.nan)
        loop = self.loop
        frontend = SimulatedFrontend(self, self.mode_name, self.options, self.code)
        mode = frontend.mode
        timeout = float(mode.timeout_s)
        tasks: Dict[int, asyncio.Task] = {}
        next_query = [min(clients, total) if clients else total]
        query = np.zeros(1, dtype=np.float32)

        def answered(q: int, task: asyncio.Task) -> None:
            del tasks[q]
            record = task.result()
            path[q], answer[q], hedged[q] = PATH_CODES[record["path"]], loop.now + next(self.hops), bool(record.get("hedged"))
            if record["deadline_ms"] is not None:
                deadline[q] = record["deadline_ms"]
            if clients and next_query[0] < total:  # its client sends the next query on receiving this answer
                self.push(answer[q], ARRIVE, next_query[0])
                next_query[0] += 1

        if clients:
            for c in range(min(clients, total)):
                self.push(0.0, ARRIVE, c)
        elif total:  # arrivals are fed one at a time, in order, so the heap stays small
            self.push(float(sends[0]), ARRIVE, 0)
        heap, pop = self.heap, heapq.heappop
        previous = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(loop)
        try:
            while heap:
                now, _seq, kind, payload = pop(heap)
                self.world_now = now
                if kind == TIMER and payload._cancelled:
                    continue
                if kind == ARRIVE and send_at[payload] != send_at[payload]:  # first seen: the client sent it now
                    send_at[payload] = now
                    if not clients and payload + 1 < total:
                        self.push(float(sends[payload + 1]), ARRIVE, payload + 1)
                if kind == REPLY:
                    replica, batch, incarnation = payload
                    if incarnation is not None:
                        if replica.down_until != incarnation:
                            continue  # the process that ran it died; its requests already failed
                        for rid in batch:
                            replica.held.discard(rid)
                    ok = incarnation is not None
                    if now < self.frontend_free:  # the frontend is computing: it reads the replies after
                        for rid in batch:
                            self.push(self.frontend_free, DELIVER, (rid, ok))
                        continue
                    loop.now = now
                    for rid in batch:
                        self._deliver(rid, ok, now)
                elif kind in (ARRIVE, TIMER, DELIVER):
                    if now < self.frontend_free:
                        self.push(self.frontend_free, kind, payload)
                        continue
                    loop.now = now
                    if kind == ARRIVE:
                        task = loop.create_task(frontend.answer_query(payload, query))
                        tasks[payload] = task
                        task.add_done_callback(lambda done, q=payload: answered(q, done))
                    elif kind == TIMER:
                        payload._run()
                    else:
                        self._deliver(payload[0], payload[1], now)
                elif kind == CLOSE:
                    replica, window_id = payload
                    if replica.window is not None and replica.window_id == window_id:
                        if now < replica.blocked_until:  # the model run holds the event loop: the timer fires after it
                            self.push(replica.blocked_until, CLOSE, payload)
                        else:
                            self._close(replica, now)
                    continue
                elif kind == FREE:
                    replica, incarnation = payload
                    if replica.busy and replica.down_until == incarnation:
                        replica.busy = False
                        if replica.queue:
                            self._start(replica, now)
                    continue
                elif kind == REACH:
                    replica = self.req_replica[payload]
                    if self.req_future[payload] is not None:
                        if now < replica.down_until:
                            self.push(replica.down_until, REACH, payload)
                        else:
                            self._reach(replica, payload, now)
                    continue
                else:  # RESTART
                    payload.busy = False
                    continue
                loop.drain()  # the frontend's callbacks and the coroutines they wake, on its clock
                self.frontend_free = loop.now
        finally:
            asyncio.events._set_running_loop(previous)
        late = (path < 0) | (answer - send_at > timeout)  # a query no mode answered in time fails at the timeout
        path[late] = FAILED
        answer[late] = send_at[late] + timeout
        stats = mode.stats()
        return ShardResult(send_at, answer, path, hedged, deadline, len(self.req_future),
                           int(stats.get("groups", 0)), int(stats.get("groups_without_coded_requests", 0)))
