"""``coded``: the run's code, served.

Systematic codes (k base replicas + one replica per coded query): each query goes at once to the
base replica with the fewest requests in flight (routing as in every other mode), then joins the
oldest open k-group that has no query on that replica yet (or opens one), so a group's queries sit
on k different replicas without the grouping ever steering a query onto a busy replica.
``group_wait_ms`` after a group's first query (default: half the deadline; with ``--deadline-ms
auto`` the adaptive deadline as it stands when the group opens) the group is sealed:
the encoder makes its coded queries, one for each coded worker, unless every query of the group
has already been answered, in which case no coded request is needed and none is sent. A query is
answered with its own output, or, once ``deadline_ms`` after its arrival has passed and any k of
the group's n = k + r outputs are in, with the decoded output. A partial group's empty slots are
filled with recently answered queries whose base outputs the frontend already holds, so its coded
queries stay in the distribution the workers were trained on and its real queries stay decodable,
at no extra base request.

Non-systematic codes (one replica per coded query, n = k + r of them, no base replicas): a group
is sealed as soon as it is full (or ``group_wait_ms`` after its first query), and every answer is
decoded, from all n outputs as soon as they are in, or from the first k once the deadline has
passed. Partial groups are padded with recent queries.

A coded worker runs a trained parity model, or the deployed model F itself when the run's
``parity_model`` is ``base``. Up to r slow or failed workers at once are covered.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from typing import Any, Dict, List, Optional

import numpy as np

from parity_ray.actors.modes import BASE, ServingMode, answer_record, clock, coded_worker, register_mode


def _ok(task) -> bool:
    return task.done() and not task.cancelled() and task.exception() is None


class Group:
    """A k-group in flight: its queries' data requests, and its coded requests once sealed."""

    __slots__ = ("id", "queries", "members", "replica_of", "data", "fillers", "coded", "sealed", "sealed_future",
                 "flush", "encode_s", "decoded", "skipped")

    def __init__(self, group_id: int):
        self.id = group_id
        self.queries: List[np.ndarray] = []
        self.members: List[Any] = []  # slot -> query id, fillers included once sealed (what a decode used)
        self.replica_of: List[int] = []  # slot -> base replica index (systematic)
        self.data: List[asyncio.Future] = []  # slot -> its base request (systematic)
        self.fillers: Dict[int, Optional[np.ndarray]] = {}  # padded slot -> its known base output (None: unknown)
        self.coded: List[asyncio.Future] = []  # coded worker j -> its request, once sealed
        self.sealed = False
        self.sealed_future = asyncio.get_running_loop().create_future()
        self.flush: Optional[asyncio.TimerHandle] = None
        self.encode_s = 0.0
        self.decoded: Dict[bytes, np.ndarray] = {}  # availability pattern -> the decoded (k, C)
        self.skipped = False  # sealed with every query already answered: no coded request sent


@register_mode("coded")
class Coded(ServingMode):

    rank = 0
    needs_code = True
    requires_parity = True
    seal_when_full = False  # True: a full group's coded queries go out with its k-th query (else at group_wait_ms)
    follows_deadline = True  # with --deadline-ms auto and no --group-wait-ms, a partial group seals at the adaptive deadline

    def __init__(self, frontend, options):
        super().__init__(frontend, options)
        self.code = frontend.code
        self.layout = self.code.layout
        self.k, self.n = self.layout.k, self.layout.n
        self.systematic = self.layout.systematic
        self.open_groups: List[Group] = []  # oldest first
        self.group_ids = itertools.count()
        # Recent (query id, query, base output): fillers for partial groups.
        self.recent: collections.deque = collections.deque(maxlen=4 * self.k)
        self.encode_s = self.decode_s = 0.0  # wall time
        self.encode_cpu_s = self.decode_cpu_s = 0.0  # this thread's CPU time
        self.groups = self.decodes = self.skipped_groups = 0

    @classmethod
    def timings(cls, options):
        timings = super().timings(options)
        group_wait_ms = options.get("group_wait_ms")
        timings["group_wait_s"] = timings["deadline_s"] / 2 if group_wait_ms is None else float(group_wait_ms) / 1000.0
        return timings

    @property
    def group_wait_s(self) -> float:
        """How long a partial group waits for more queries before it is sealed: ``group_wait_ms``, or half
        a given deadline; with ``--deadline-ms auto`` the adaptive deadline as it stands when the group
        opens. That deadline is already the pool's p95, the point where a query is late: a partial group
        whose queries are all answered by then is skipped (no coded request), one still waiting gets its
        coded queries as a hedge would (measured in the parm-fig9a preset, 12 replicas, 150-390 qps:
        coded-eager's (p99.9 - p50) 26-27 ms -> 10-15 ms at 1.25-1.36 requests a query instead of
        1.37-1.43; half of it sealed most groups partial, 1.7-1.9 requests a query). Frozen at its start
        value as before, a straggling partial group's query waited out 25 ms whatever the pool's latencies."""
        if self.adaptive is not None and self.options.get("group_wait_ms") is None:
            return self.adaptive.value
        return self._group_wait_s

    @group_wait_s.setter
    def group_wait_s(self, value: float) -> None:
        self._group_wait_s = value

    @classmethod
    def workers(cls, layout, has_parity):
        coded_pool = [coded_worker(j) for j in range(layout.num_coded)]
        if layout.systematic:
            return {"base": [BASE] * layout.k, "coded": coded_pool}
        return {"coded": coded_pool}

    def stats(self) -> Dict[str, Any]:
        return {"encode_s": self.encode_s, "decode_s": self.decode_s, "encode_cpu_s": self.encode_cpu_s,
                "decode_cpu_s": self.decode_cpu_s, "groups": self.groups, "decodes": self.decodes,
                "groups_without_coded_requests": self.skipped_groups}

    # ------------------------------------------------------------------ entry point
    async def answer(self, query_id, query):
        arrived = clock()
        group, position = self._join(query_id, query)
        if self.systematic:
            record = await self._systematic_answer(group, position, arrived)
        else:
            record = await self._nonsystematic_answer(group, position, arrived)
        record["group_id"], record["position"] = group.id, position
        return record

    # ------------------------------------------------------------------ groups
    def _join(self, query_id, query: np.ndarray):
        """Send the query to a base replica at once (systematic codes) and place it in an open group."""
        frontend = self.frontend
        if self.systematic:
            replica = frontend.pick("base")
            group = next((g for g in self.open_groups if replica not in g.replica_of), None)
        else:
            replica, group = None, (self.open_groups[0] if self.open_groups else None)
        if group is None:
            group = Group(next(self.group_ids))
            group.flush = asyncio.get_running_loop().call_later(self.group_wait_s, self._seal, group)
            self.open_groups.append(group)
        position = len(group.queries)
        group.queries.append(query)
        group.members.append(query_id)
        if self.systematic:
            group.replica_of.append(replica)
            group.data.append(frontend.send("base", replica, query))
        if len(group.queries) == self.k:
            self.open_groups.remove(group)
            if not self.systematic or self.seal_when_full:
                self._seal(group)  # non-systematic: every answer waits for it
        return group, position

    def _seal(self, group: Group) -> None:
        """Encode the group and send its coded queries (not needed when all its queries are answered)."""
        if group.sealed:
            return
        group.sealed = True
        if group in self.open_groups:
            self.open_groups.remove(group)
        if group.flush is not None:
            group.flush.cancel()
        group.sealed_future.set_result(True)
        if self.systematic and all(_ok(request) for request in group.data):
            group.skipped = True
            self.skipped_groups += 1
            return
        started, cpu = time.perf_counter(), time.thread_time()
        coded_queries = self.code.encode_group(np.stack(group.queries + self._fill(group)))
        group.encode_s = time.perf_counter() - started
        self.encode_s += group.encode_s
        self.encode_cpu_s += time.thread_time() - cpu
        self.groups += 1
        send = self.frontend.send
        workers = self.layout.num_coded
        group.coded = [send("coded", self.frontend.pick_worker("coded", j, workers), coded_queries[j]) for j in range(workers)]
        if not self.systematic:  # pads for later partial groups (their outputs are never needed)
            self.recent.extend((i, q, None) for i, q in zip(group.members, group.queries))

    def _fill(self, group: Group) -> List[np.ndarray]:
        """Queries for a partial group's empty slots, most recent answers first.

        Before anything has been answered (the first partial groups of a run) slot 0's query is
        repeated: its coded queries are still sent, but (systematic) slot 0 cannot be decoded from them.
        """
        missing = self.k - len(group.queries)
        if not missing:
            return []
        recent = list(self.recent)[-missing:]
        for offset, (_query_id, _query, output) in enumerate(recent):
            group.fillers[len(group.queries) + offset] = output
        group.members += [i for i, _, _ in recent] + [group.members[0]] * (missing - len(recent))
        return [q for _, q, _ in recent] + [group.queries[0]] * (missing - len(recent))

    def _outputs(self, group: Group):
        """``(outputs (n, C) or None, available (n,))`` of what the group has so far."""
        available = np.zeros(self.n, dtype=bool)
        values: Dict[int, np.ndarray] = {}
        if self.systematic:
            real = len(group.data)
            for slot in range(self.k):
                if slot < real:
                    request = group.data[slot]
                    if _ok(request):
                        values[slot] = request.result()
                elif group.fillers.get(slot) is not None:
                    values[slot] = group.fillers[slot]
                elif _ok(group.data[0]):  # an unfilled slot repeats slot 0's query
                    values[slot] = group.data[0].result()
        for j, request in enumerate(group.coded):
            if _ok(request):
                values[self.layout.coded_slot(j)] = request.result()
        if not values:
            return None, available
        outputs = np.zeros((self.n, len(next(iter(values.values())))), dtype=np.float32)
        for slot, value in values.items():
            outputs[slot] = value
            available[slot] = True
        return outputs, available

    def _decode(self, group: Group, outputs: np.ndarray, available: np.ndarray) -> np.ndarray:
        key = available.tobytes()
        decoded = group.decoded.get(key)
        if decoded is None:
            started, cpu = time.perf_counter(), time.thread_time()
            decoded = group.decoded[key] = self.code.decode_group(outputs, available)
            self.decode_s += time.perf_counter() - started
            self.decode_cpu_s += time.thread_time() - cpu
            self.decodes += 1
        return decoded

    def _pending(self, group: Group) -> List[asyncio.Future]:
        waiting = [t for t in itertools.chain(group.data, group.coded) if not t.done()]
        if not group.sealed:
            waiting.append(group.sealed_future)
        return waiting

    # ------------------------------------------------------------------ systematic
    async def _systematic_answer(self, group: Group, position: int, arrived: float) -> Dict[str, Any]:
        own = group.data[position]
        source = f"base:{group.replica_of[position]}"
        deadline, hard_stop = arrived + self.deadline_s, arrived + self.timeout_s
        extra: List[tuple] = []  # (request, base replica) a subclass adds: coded-hedged's duplicate

        def direct(value, replica=source, **more):
            self.recent.append((group.members[position], group.queries[position], value))
            for task, _replica in extra:
                task.cancel()
            return answer_record("direct", replica, value, coder_seconds=group.encode_s,
                                 **{"hedged": bool(extra), **more})

        await asyncio.wait((own,), timeout=self.deadline_s)
        while True:
            if _ok(own):
                return direct(own.result())
            answered = self._extra_answer(group, position, extra)
            if answered is not None:
                return direct(answered[1], answered[0])
            now = clock()
            if now >= deadline or own.done():
                decoded = self._try_decode(group, position)
                if decoded is not None:
                    return decoded
            remaining = hard_stop - now
            self._maybe_hedge(group, position, arrived, now, extra)
            waiting = self._pending(group) + [t for t, _replica in extra if not t.done()]
            if remaining <= 0 or not waiting:
                return self._failure(group, position, own, "timeout" if remaining <= 0 else "not decodable", extra)
            timeout = min(remaining, self._next_event(arrived, now, extra))
            if now < deadline and not own.done():
                timeout = min(timeout, deadline - now)
            await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)

    def _try_decode(self, group: Group, position: int) -> Optional[Dict[str, Any]]:
        if not group.sealed:
            return None
        outputs, available = self._outputs(group)
        available[position] = False  # its own output is not in (the caller checked)
        if outputs is None or not self.code.decodable(available):
            return None
        started = time.perf_counter()
        decoded = self._decode(group, outputs, available)
        used = [j for j in range(self.layout.num_coded) if available[self.layout.coded_slot(j)]]
        return answer_record("decoded", f"parity:{used}", decoded[position], decoded_from=np.flatnonzero(available).tolist(),
                             group_members=list(group.members), coder_seconds=group.encode_s + time.perf_counter() - started)

    def _failure(self, group: Group, position: int, own, reason: str, extra) -> Dict[str, Any]:
        if own.done() and not own.cancelled() and own.exception() is not None:
            reason = f"replica {group.replica_of[position]} failed: {type(own.exception()).__name__}; {reason}"
        _outputs, available = self._outputs(group)
        for task, _replica in extra:
            task.cancel()
        return answer_record("failed", None, reason=f"{reason}; {int(available.sum())} of {self.n} outputs arrived",
                             coder_seconds=group.encode_s, hedged=bool(extra))

    # hooks for coded-hedged
    def _extra_answer(self, group, position, extra):
        return None

    def _maybe_hedge(self, group, position, arrived, now, extra) -> None:
        return None

    def _next_event(self, arrived: float, now: float, extra) -> float:
        return float("inf")

    # ------------------------------------------------------------------ non-systematic
    async def _nonsystematic_answer(self, group: Group, position: int, arrived: float) -> Dict[str, Any]:
        deadline, hard_stop = arrived + self.deadline_s, arrived + self.timeout_s
        while True:
            now = clock()
            if group.sealed:
                outputs, available = self._outputs(group)
                everything = bool(available.all())
                if outputs is not None and self.code.decodable(available) and (everything or now >= deadline):
                    started = time.perf_counter()
                    decoded = self._decode(group, outputs, available)
                    used = [j for j in range(self.layout.num_coded) if available[j]]
                    return answer_record("decoded", f"parity:{used}", decoded[position],
                                         decoded_from=np.flatnonzero(available).tolist(),
                                         group_members=list(group.members), coder_seconds=group.encode_s + time.perf_counter() - started)
            waiting = self._pending(group)
            remaining = hard_stop - now
            if remaining <= 0 or not waiting:
                _outputs, available = self._outputs(group)
                failed = [j for j, t in enumerate(group.coded) if t.done() and not _ok(t)]
                reason = "timeout" if remaining <= 0 else "not decodable"
                if failed:
                    reason = f"coded workers {failed} failed; {reason}"
                return answer_record("failed", None, reason=f"{reason}; {int(available.sum())} of {self.n} outputs arrived",
                                     coder_seconds=group.encode_s)
            timeout = remaining if now >= deadline else min(remaining, deadline - now)
            await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
