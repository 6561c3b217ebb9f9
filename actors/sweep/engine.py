"""The discrete-event model of one app (a shard): replicas with batching, queues, stragglers and
crashes behind the frontend's routing, under an open or closed load; the serving modes' answer rules.

What is shared with the Serve floor rather than written again: the replica pools a mode deploys
(``ServingMode.workers``), its policy times (``ServingMode.timings``: deadline, hedge deadline,
group wait, timeout), the routing rule (``actors.modes.pick_replica``: fewest requests in flight,
ties in turn) and the straggler and fault models (``actors.stragglers.StragglerState``, stepped on
the simulated clock). What is modelled here is what the asyncio code of a mode does with them: one
``Policy`` per registered mode (``POLICIES``, keyed by the mode's registry name).

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

import heapq
from collections import deque
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np

from parity_ray.actors.modes import get_mode, pick_replica
from parity_ray.actors.stragglers import StragglerState
from parity_ray.registry import Registry

INF = float("inf")
# event kinds
ARRIVE, CLOSE, FREE, REPLY, TIMER, RESTART = range(6)
# query timers
DEADLINE, HEDGE, SEAL = range(3)
# answer paths
DIRECT, DECODED, FAILED = 0, 1, 2
PATHS = ("direct", "decoded", "failed")


@dataclass
class ShardResult:
    send: np.ndarray  # (Q,) seconds
    answer: np.ndarray  # (Q,) seconds (the timeout for failed ones)
    path: np.ndarray  # (Q,) int8: 0 direct, 1 decoded, 2 failed
    hedged: np.ndarray  # (Q,) bool
    requests: int  # requests sent to replicas (base + coded + duplicates)
    groups_encoded: int
    groups_skipped: int


class Sampler:
    """In-flight times per batch size from a ServiceModel, drawn from a seeded buffer of uniforms."""

    def __init__(self, service, rng: np.random.Generator):
        self.tables = service.tables()
        self.per_item_s = float(service.per_item_s)
        self.base = self.tables[min(self.tables)]
        self.rng = rng
        self.buffer = rng.random(65536)
        self.at = 0

    def draw(self, size: int) -> float:
        if self.at >= len(self.buffer):
            self.buffer, self.at = self.rng.random(65536), 0
        u = self.buffer[self.at]
        self.at += 1
        table = self.tables.get(size)
        if table is None:
            return float(self.base[int(u * len(self.base))]) + self.per_item_s * (size - min(self.tables))
        return float(table[int(u * len(table))])


class Replica:
    __slots__ = ("index", "inflight", "window", "window_id", "queue", "busy", "down_until", "state", "held", "blocked_until")

    def __init__(self, index: int, state: StragglerState):
        self.index = index
        self.inflight = 0  # the frontend's count of this replica's requests not yet answered
        self.window: Optional[List[int]] = None  # request ids of the open batch window
        self.window_id = 0
        self.queue: deque = deque()  # closed batches waiting for the slot
        self.busy = False
        self.down_until = -INF
        self.state = state
        self.held: set = set()  # requests this replica holds (window, queue, running): a crash fails them
        self.blocked_until = -INF  # its model run blocks its event loop: no window closes until then


class Shard:
    """One app: its pools, its replicas and its frontend's routing, run on a simulated clock."""

    def __init__(self, mode: str, layout, has_parity: bool, options: Dict[str, Any], service, stragglers: List[dict],
                 first_replica: int, n_cluster: int, seed: int, max_batch_size: int, batch_wait_s: float,
                 busy_fraction: float, restart_s: float):
        mode_cls = get_mode(mode)
        mode_cls.check(layout, has_parity)
        self.pools = mode_cls.workers(layout, has_parity)
        self.timings = mode_cls.timings(options)
        self.layout = layout
        self.policy = POLICIES.get(mode)(self)
        self.replicas: Dict[str, List[Replica]] = {}
        index = first_replica
        for pool, workers in self.pools.items():  # base first, then coded: the app builder's numbering
            self.replicas[pool] = []
            for _worker in workers:
                self.replicas[pool].append(Replica(index, StragglerState(stragglers, index, n_cluster, seed)))
                index += 1
        self.stragglers, self.n_cluster, self.seed = stragglers, n_cluster, seed
        self.crashes = any(entry.get("kind") == "crash" for entry in stragglers)
        self.turns = {pool: 0 for pool in self.pools}
        self.sampler = Sampler(service, np.random.default_rng([seed, 1_000_003, first_replica]))
        self.max_batch, self.batch_wait = int(max_batch_size), float(batch_wait_s)
        self.busy_fraction, self.restart_s = float(busy_fraction), float(restart_s)
        self.heap: list = []
        self.seq = 0
        # requests: owner query, replica, done time, ok
        self.req_query: List[int] = []
        self.req_tag: List[int] = []
        self.req_replica: List[Replica] = []
        self.req_done: List[float] = []
        self.req_ok: List[bool] = []
        self.groups_encoded = self.groups_skipped = 0

    # ------------------------------------------------------------------ plumbing
    def push(self, time: float, kind: int, payload) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (time, self.seq, kind, payload))

    def pick(self, pool: str, exclude=()) -> int:
        replicas = self.replicas[pool]
        turn = self.turns[pool]
        self.turns[pool] = turn + 1
        return pick_replica([r.inflight for r in replicas], turn, exclude)

    def send(self, pool: str, index: int, query: int, tag: int, now: float) -> int:
        """A request to replica ``index`` of ``pool``; its id."""
        replica = self.replicas[pool][index]
        rid = len(self.req_query)
        self.req_query.append(query)
        self.req_tag.append(tag)
        self.req_replica.append(replica)
        self.req_done.append(INF)
        self.req_ok.append(False)
        replica.inflight += 1
        if now < replica.down_until:  # restarting: it waits for the new process
            self.push(replica.down_until, ARRIVE, (-1 - rid, 0))
        else:
            self._reach(replica, rid, now)
        return rid

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

    def _finish(self, rid: int, now: float, ok: bool) -> None:
        if self.req_done[rid] != INF:
            return
        self.req_done[rid], self.req_ok[rid] = now, ok
        self.req_replica[rid].inflight -= 1
        self.policy.on_reply(rid, now)

    # ------------------------------------------------------------------ the run
    def run(self, sends: np.ndarray, clients: int = 0, timeout_s: Optional[float] = None) -> ShardResult:
        """Open loop: ``sends`` are the queries' send times. Closed loop (``clients`` > 0): ``len(sends)``
        queries, each client sending its next as soon as its last is answered."""
        total = len(sends)
        policy = self.policy
        policy.start(total)
        send_at = np.full(total, np.nan)
        if clients:
            for c in range(min(clients, total)):
                self.push(0.0, ARRIVE, (c, 0))
            self.next_query = min(clients, total)
            policy.closed = True
        else:
            send_at[:] = sends
            self.next_query = total
            policy.closed = False
            # arrivals are fed one at a time, in order, so the heap stays small
            if total:
                self.push(float(sends[0]), ARRIVE, (0, 0))
        self.policy.send_at = send_at
        heap = self.heap
        pop = heapq.heappop
        while heap:
            now, _seq, kind, payload = pop(heap)
            if kind == ARRIVE:
                q, _ = payload
                if q < 0:  # a request held while its replica restarted
                    rid = -1 - q
                    replica = self.req_replica[rid]
                    if self.req_done[rid] == INF:
                        self._reach(replica, rid, now)
                    continue
                send_at[q] = now
                policy.arrive(q, now)
                if not policy.closed and q + 1 < total:
                    self.push(float(sends[q + 1]), ARRIVE, (q + 1, 0))
            elif kind == CLOSE:
                replica, window_id = payload
                if replica.window is not None and replica.window_id == window_id:
                    if now < replica.blocked_until:  # the model run holds the event loop: the timer fires after it
                        self.push(replica.blocked_until, CLOSE, payload)
                    else:
                        self._close(replica, now)
            elif kind == FREE:
                replica, incarnation = payload
                if replica.busy and replica.down_until == incarnation:
                    replica.busy = False
                    if replica.queue:
                        self._start(replica, now)
            elif kind == REPLY:
                replica, batch, incarnation = payload
                if incarnation is None:  # a crash: every request it held failed
                    for rid in batch:
                        self._finish(rid, now, False)
                    continue
                if replica.down_until != incarnation:
                    continue  # the process that ran it died; its requests already failed
                for rid in batch:
                    replica.held.discard(rid)
                    self._finish(rid, now, True)
            elif kind == TIMER:
                policy.timer(payload, now)
            else:  # RESTART
                payload.busy = False
        return policy.result(self)

    def answered(self, q: int, now: float) -> None:
        """Closed loop: the client of query ``q`` sends its next one now."""
        if self.next_query < len(self.policy.path):
            self.push(now, ARRIVE, (self.next_query, 0))
            self.next_query += 1


# --------------------------------------------------------------------------- the modes' answer rules

POLICIES: Registry = Registry("sweep policy", "sweep_policies", """
    Keyed by a registered serving mode's name: a :class:`Policy` subclass, built with one
    ``Shard`` per simulated cluster, that does on events what the mode's asyncio ``answer`` does
    on Serve: ``start(total)``, ``arrive(query, now)``, ``on_reply(request, now)``,
    ``timer(payload, now)``, then ``result(shard)`` -> ``ShardResult``. Every serving mode has one.""")


class Policy:
    """What a mode does with a query (the asyncio ``answer`` of ``actors.modes.<mode>``), on events."""

    def __init__(self, shard: Shard):
        self.shard = shard
        self.t = shard.timings

    def start(self, total: int) -> None:
        self.answer = np.full(total, np.nan)
        self.path = np.full(total, -1, dtype=np.int8)
        self.hedged = np.zeros(total, dtype=bool)

    def done(self, q: int, now: float, path: int) -> None:
        if self.path[q] >= 0:
            return
        self.path[q], self.answer[q] = path, now
        if self.closed:
            self.shard.answered(q, now)

    def arrive(self, q: int, now: float) -> None:
        raise NotImplementedError

    def on_reply(self, rid: int, now: float) -> None:
        raise NotImplementedError

    def timer(self, payload, now: float) -> None:
        pass

    def result(self, shard: Shard) -> ShardResult:
        timeout = self.t["timeout_s"]
        late = (self.path < 0) | (self.answer - self.send_at > timeout)
        self.path[late] = FAILED
        self.answer[late] = self.send_at[late] + timeout
        return ShardResult(self.send_at, self.answer, self.path, self.hedged, len(shard.req_query),
                           shard.groups_encoded, shard.groups_skipped)


@POLICIES.register("none")
@POLICIES.register("replication")
class Single(Policy):
    """``none`` / ``replication``: one request to the least busy base replica; its answer is the answer."""

    def arrive(self, q, now):
        shard = self.shard
        shard.send("base", shard.pick("base"), q, 0, now)

    def on_reply(self, rid, now):
        shard = self.shard
        self.done(shard.req_query[rid], now, DIRECT if shard.req_ok[rid] else FAILED)


@POLICIES.register("hedged")
class Hedged(Policy):
    """``hedged``: a duplicate to another base replica at the deadline (or when the first fails); first answer wins."""

    def start(self, total):
        super().start(total)
        self.first: Dict[int, int] = {}
        self.pending: Dict[int, int] = {}

    def arrive(self, q, now):
        shard = self.shard
        replica = shard.pick("base")
        self.first[q], self.pending[q] = replica, 1
        shard.send("base", replica, q, 0, now)
        shard.push(now + self.t["deadline_s"], TIMER, (q, DEADLINE))

    def _hedge(self, q, now):
        if self.hedged[q] or self.path[q] >= 0:
            return
        shard = self.shard
        self.hedged[q] = True
        self.pending[q] += 1
        shard.send("base", shard.pick("base", exclude=(self.first[q],)), q, 1, now)

    def on_reply(self, rid, now):
        shard = self.shard
        q = shard.req_query[rid]
        self.pending[q] -= 1
        if shard.req_ok[rid]:
            self.done(q, now, DIRECT)
        elif not self.hedged[q]:
            self._hedge(q, now)  # the first replica failed: the duplicate goes now
        elif not self.pending[q]:
            self.done(q, now, FAILED)  # every request of it failed

    def timer(self, payload, now):
        q, _kind = payload
        self._hedge(q, now)


class Group:
    __slots__ = ("id", "queries", "replica_of", "data", "coded", "sealed", "fillers", "mirrors", "first")

    def __init__(self, group_id: int, first: float):
        self.id, self.first = group_id, first
        self.queries: List[int] = []
        self.replica_of: List[int] = []
        self.data: List[int] = []
        self.coded: List[int] = []
        self.sealed = False
        self.fillers = 0  # padded slots whose outputs the frontend holds
        self.mirrors = 0  # padded slots repeating slot 0's query


@POLICIES.register("coded")
class Coded(Policy):
    """``coded``: route-first grouping, a seal at ``group_wait_s``, decode after the deadline from any k of n."""

    hedging = False
    seal_when_full = False  # as the Serve mode's: coded-eager sends a full group's coded queries at once

    def start(self, total):
        super().start(total)
        self.k, self.n = self.shard.layout.k, self.shard.layout.n
        self.systematic = self.shard.layout.systematic
        self.num_coded = self.shard.layout.num_coded
        self.open: List[Group] = []
        self.group_of: Dict[int, Group] = {}
        self.position: Dict[int, int] = {}
        self.arrived: Dict[int, float] = {}
        self.recent = 0  # answered queries whose outputs the frontend holds (fillers), at most 4k
        self.group_ids = 0

    def arrive(self, q, now):
        shard = self.shard
        self.arrived[q] = now
        if self.systematic:
            replica = shard.pick("base")
            group = next((g for g in self.open if replica not in g.replica_of), None)
        else:
            replica, group = -1, (self.open[0] if self.open else None)
        if group is None:
            group = Group(self.group_ids, now)
            self.group_ids += 1
            self.open.append(group)
            shard.push(now + self.t["group_wait_s"], TIMER, (group, SEAL))
        self.group_of[q], self.position[q] = group, len(group.queries)
        group.queries.append(q)
        if self.systematic:
            group.replica_of.append(replica)
            group.data.append(shard.send("base", replica, q, 0, now))
            shard.push(now + self.t["deadline_s"], TIMER, (q, DEADLINE))
            if self.hedging:
                shard.push(now + self.t["hedge_s"], TIMER, (q, HEDGE))
        else:
            shard.push(now + self.t["deadline_s"], TIMER, (q, DEADLINE))
        if len(group.queries) == self.k:
            self.open.remove(group)
            if not self.systematic or self.seal_when_full:
                self._seal(group, now)

    def _seal(self, group: Group, now: float) -> None:
        if group.sealed:
            return
        group.sealed = True
        if group in self.open:
            self.open.remove(group)
        shard = self.shard
        if self.systematic and all(shard.req_ok[r] for r in group.data):
            shard.groups_skipped += 1
            return
        missing = self.k - len(group.queries)
        group.fillers = min(missing, self.recent) if self.systematic else 0
        group.mirrors = missing - group.fillers if self.systematic else 0
        if not self.systematic:
            self.recent = min(self.recent + len(group.queries), 4 * self.k)
        shard.groups_encoded += 1
        group.coded = [shard.send("coded", j, group.queries[0], 2, now) for j in range(self.num_coded)]
        for q in group.queries:
            self._check(q, now)

    def _available(self, group: Group, position: int) -> int:
        """Outputs of the group in now, the query's own left out."""
        shard = self.shard
        ok = shard.req_ok
        count = group.fillers
        if self.systematic:
            count += sum(1 for slot, r in enumerate(group.data) if slot != position and ok[r])
            if group.mirrors and ok[group.data[0]]:
                count += group.mirrors
        count += sum(1 for r in group.coded if ok[r])
        return count

    def _check(self, q: int, now: float) -> None:
        """Answer the query if it can be answered now (its own output, or decoded)."""
        if self.path[q] >= 0:
            return
        group, position = self.group_of[q], self.position[q]
        shard = self.shard
        if not self.systematic:
            if not group.sealed:
                return
            count = sum(1 for r in group.coded if shard.req_ok[r])
            if count >= self.k and (count == self.n or now >= self.arrived[q] + self.t["deadline_s"]):
                self.done(q, now, DECODED)
            elif all(shard.req_done[r] != INF for r in group.coded) and count < self.k:
                self.done(q, now, FAILED)
            return
        own = group.data[position]
        if shard.req_ok[own]:
            self.done(q, now, DIRECT)
            return
        own_failed = shard.req_done[own] != INF
        if group.sealed and (own_failed or now >= self.arrived[q] + self.t["deadline_s"]):
            if self._available(group, position) >= self.k:
                self.done(q, now, DECODED)
                return
        if own_failed and group.sealed and not (self.hedging and self.hedged[q]):
            pending = [r for r in group.data + group.coded if shard.req_done[r] == INF]
            if not pending and not (self.hedging and now < self.arrived[q] + self.t["hedge_s"]):
                self.done(q, now, FAILED)

    def on_reply(self, rid, now):
        shard = self.shard
        q = shard.req_query[rid]
        tag = shard.req_tag[rid]
        if tag == 1:  # coded-hedged's duplicate
            if shard.req_ok[rid]:
                self.done(q, now, DIRECT)
            return
        group = self.group_of[q]
        if tag == 0 and shard.req_ok[rid] and self.path[q] < 0:
            self.recent = min(self.recent + 1, 4 * self.k)
        for member in group.queries:
            self._check(member, now)

    def timer(self, payload, now):
        subject, kind = payload
        if kind == SEAL:
            self._seal(subject, now)
        elif kind == DEADLINE:
            self._check(subject, now)
        elif kind == HEDGE and self.path[subject] < 0 and not self.hedged[subject]:
            shard = self.shard
            group = self.group_of[subject]
            self.hedged[subject] = True
            exclude = (group.replica_of[self.position[subject]],)
            shard.send("base", shard.pick("base", exclude=exclude), subject, 1, now)


@POLICIES.register("coded-eager")
class CodedEager(Coded):
    """``coded-eager``: ``coded`` sealing a full group at its k-th query; its zero deadline comes from the mode's timings."""

    seal_when_full = True


@POLICIES.register("coded-hedged")
class CodedHedged(Coded):
    """``coded-hedged``: ``coded``, plus a duplicate to another base replica at the hedge deadline."""

    hedging = True


