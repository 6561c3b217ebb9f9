"""``CodedFrontend``: one query interface for every serving mode, so modes differ in one thing only.

* ``coded``: each query goes to a base replica the moment it arrives; consecutive queries fill
  k-groups, and a group's queries sit on k different replicas. When a
  group is full (or ``group_wait_s`` after its first query) the run's encoder makes its r parity
  queries for the r parity replicas. Each query is answered with its own output, or, once
  ``deadline_s`` after its arrival has passed and any k of the k+r outputs are in, with the
  decoded output. A partial group's empty slots are filled with recently answered queries whose
  base outputs the frontend already holds, so its parity stays in the distribution the parity
  model was trained on and its real queries stay decodable, at no extra base request.
* ``replication``: the same k+r instances all run the base model and share the load (the
  published "equal resources" baseline).
* ``hedged``: the same k+r base replicas; a query still unanswered at the deadline is sent again
  to another replica, and the first answer wins ("The Tail at Scale").
* ``none``: k base replicas, no redundancy.

Every mode picks a base replica the same way: the one with the fewest requests outstanding from
this frontend, ties taken in turn (round robin). A replica stuck in a slow batch is thereby left
alone by later queries in every mode, so the baselines are as strong as their routing can make
them and the modes still differ in one thing only.

Every query ends as exactly one of ``direct``, ``decoded`` or ``failed`` (with a reason).
"""

from __future__ import annotations

import asyncio
import collections
import gc
import itertools
import time
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from ray import serve

MODES = ("coded", "replication", "hedged", "none")


async def _resolve(response):
    return await response


class _Group:
    """A k-group in flight: its queries' data requests, and its parity requests once sealed."""

    def __init__(self, group_id: int):
        self.id = group_id
        self.queries: List[np.ndarray] = []
        self.replica_of: List[int] = []  # slot -> base replica index
        self.data: List[asyncio.Future] = []
        self.fillers: Dict[int, np.ndarray] = {}  # empty slot -> the known base output of its filler query
        self.parity: List[asyncio.Future] = []
        self.sealed = False
        self.sealed_event = asyncio.Event()
        self.flush: Optional[asyncio.Task] = None
        self.encode_s = 0.0


@serve.deployment(max_ongoing_requests=4096)
class CodedFrontend:
    def __init__(self, mode: str, run: Dict[str, Any], replicas: List[Any], parities: List[Any],
                 deadline_s: float, group_wait_s: float = 0.005, timeout_s: float = 10.0):
        from parity_ray.coders import create_decoder, create_encoder
        from parity_ray.data import get_dataset_spec

        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        config = run["config"]
        self.mode, self.k, self.r = mode, int(config["k"]), int(config["r"])
        self.replicas, self.parities = replicas, parities
        self.deadline_s, self.group_wait_s, self.timeout_s = deadline_s, group_wait_s, timeout_s
        spec = get_dataset_spec(config["dataset"])
        self.encoder = create_encoder(config["encoder"], k=self.k, r=self.r, input_shape=spec.input_shape).eval()
        self.decoder = create_decoder(config["decoder"], k=self.k, r=self.r, systematic=self.encoder.systematic,
                                      input_shape=spec.input_shape, num_outputs=spec.num_classes).eval()
        self.open_group: Optional[_Group] = None
        self.group_ids = itertools.count()
        self.round_robin = itertools.count()
        self.outstanding = [0] * len(replicas)  # requests in flight per base replica, for routing
        # Recent (query, base output) pairs answered directly: fillers for partial groups.
        self.answered: collections.deque = collections.deque(maxlen=4 * self.k)
        torch.set_num_threads(1)  # encode/decode are tiny; a thread pool would only contend with the replicas
        gc.freeze()  # the start-up heap (torch, the coders) stays out of every later collection pause

    # ------------------------------------------------------------------ entry point
    async def __call__(self, query_id: int, query: np.ndarray) -> Dict[str, Any]:
        if self.mode == "coded":
            arrived = time.perf_counter()
            group, position = self._join(query)
            return {"query_id": query_id, "group_id": group.id, "position": position,
                    **await self._coded_answer(group, position, arrived)}
        if self.mode == "hedged":
            return await self._hedged(query_id, query)
        return await self._single(query_id, query)

    async def placement(self) -> Dict[str, str]:
        """Node id of every replica behind this frontend: ``base:<i>`` / ``parity:<j>`` -> node."""
        names = [f"base:{i}" for i in range(len(self.replicas))] + [f"parity:{j}" for j in range(len(self.parities))]
        nodes = await asyncio.gather(*(_resolve(h.node_id.remote()) for h in self.replicas + self.parities))
        return dict(zip(names, nodes))

    # ------------------------------------------------------------------ coded
    def _join(self, query: np.ndarray):
        """Place the query in the open group and send it to a replica at once.

        Only the parity waits for the group: it is encoded when the group is full, or after
        ``group_wait_s`` for a partial group.
        """
        if self.open_group is None:
            self.open_group = _Group(next(self.group_ids))
            self.open_group.flush = asyncio.create_task(self._flush_later(self.open_group))
        group = self.open_group
        position = len(group.queries)
        replica = self._pick(exclude=group.replica_of)
        group.queries.append(query)
        group.replica_of.append(replica)
        group.data.append(self._send(replica, query))
        if len(group.queries) == self.k:
            self._seal(group)
        return group, position

    async def _flush_later(self, group: "_Group") -> None:
        await asyncio.sleep(self.group_wait_s)
        if not group.sealed:
            self._seal(group)

    def _seal(self, group: "_Group") -> None:
        if group.sealed:
            return
        group.sealed = True
        if self.open_group is group:
            self.open_group = None
        if group.flush is not None and group.flush is not asyncio.current_task():
            group.flush.cancel()
        started = time.perf_counter()
        queries = group.queries + self._fill(group)
        with torch.no_grad():
            parity_queries = self.encoder(torch.from_numpy(np.stack(queries))[None])[0].numpy()
        group.encode_s = time.perf_counter() - started
        group.parity = [asyncio.ensure_future(_resolve(self.parities[j].remote(parity_queries[j]))) for j in range(self.r)]
        group.sealed_event.set()

    def _fill(self, group: "_Group") -> List[np.ndarray]:
        """Queries for a partial group's empty slots, most recent answers first.

        Before anything has been answered (the first partial groups of a run) slot 0's query is
        repeated: the parity is still sent, but slot 0 cannot be decoded from it.
        """
        missing = self.k - len(group.queries)
        recent = list(self.answered)[-missing:] if missing else []
        for offset, (query, output) in enumerate(recent):
            group.fillers[len(group.queries) + offset] = output
        return [q for q, _ in recent] + [group.queries[0]] * (missing - len(recent))

    async def _coded_answer(self, group: "_Group", position: int, arrived: float) -> Dict[str, Any]:
        own = group.data[position]
        source = f"base:{group.replica_of[position]}"
        hard_stop = arrived + self.timeout_s

        def direct(value):
            self.answered.append((group.queries[position], value))
            return _result("direct", source, value, group.encode_s)

        try:
            return direct(await asyncio.wait_for(asyncio.shield(own), timeout=self.deadline_s))
        except asyncio.TimeoutError:
            pass
        except Exception:
            pass  # its replica failed: decode it like a straggler
        while True:
            if own.done() and not own.cancelled() and own.exception() is None:
                return direct(own.result())
            decode_started = time.perf_counter()
            decoded = self._try_decode(group, position)
            if decoded is not None:
                output, used = decoded
                return _result("decoded", f"parity:{used}", output,
                               group.encode_s + time.perf_counter() - decode_started)
            remaining = hard_stop - time.perf_counter()
            waiting = [t for t in group.data + group.parity if not t.done()]
            if remaining <= 0 or (group.sealed and not waiting):
                reason = "timeout" if remaining <= 0 else "not decodable"
                if own.done() and not own.cancelled() and own.exception() is not None:
                    reason = f"replica {position} failed: {type(own.exception()).__name__}; {reason}"
                arrived_outputs = self._available(group)
                return _result("failed", None, None, group.encode_s,
                               f"{reason}; {len(arrived_outputs[0]) + len(arrived_outputs[1])} of {self.k + self.r} outputs arrived")
            if not group.sealed:
                waiting.append(asyncio.ensure_future(group.sealed_event.wait()))
            await asyncio.wait(waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)

    def _available(self, group: "_Group"):
        def ok(task):
            return task.done() and not task.cancelled() and task.exception() is None

        data = dict(group.fillers)
        for slot in range(self.k):
            request = group.data[slot if slot < len(group.data) else 0]  # unfilled slots repeat slot 0
            if slot not in data and ok(request):
                data[slot] = request.result()
        parity = {j: t.result() for j, t in enumerate(group.parity) if ok(t)}
        return data, parity

    def _try_decode(self, group: "_Group", position: int):
        if not group.sealed:
            return None
        data, parity = self._available(group)
        data.pop(position, None)
        if len(data) + len(parity) < self.k or not parity:
            return None
        return self._decode(data, parity)[position], sorted(parity)

    def _decode(self, data: Dict[int, np.ndarray], parity: Dict[int, np.ndarray]) -> np.ndarray:
        """The decoder over the k + r worker outputs of a systematic code (slots k.. are the parities)."""
        n = len(next(iter({**data, **parity}.values())))
        outputs = torch.zeros(1, self.k + self.r, n)
        available = torch.zeros(1, self.k + self.r, dtype=torch.bool)
        for slot, value in [*data.items(), *((self.k + j, v) for j, v in parity.items())]:
            outputs[0, slot], available[0, slot] = torch.from_numpy(np.asarray(value)), True
        with torch.no_grad():
            return self.decoder.decode(outputs, available)[0].numpy()

    # ------------------------------------------------------------------ routing
    def _pick(self, exclude=()) -> int:
        """The base replica with the fewest outstanding requests (not in ``exclude``); ties in turn."""
        n, turn = len(self.replicas), next(self.round_robin)
        candidates = [i for i in range(n) if i not in exclude]
        return min(candidates, key=lambda i: (self.outstanding[i], (i - turn) % n))

    def _send(self, replica: int, query: np.ndarray) -> asyncio.Future:
        self.outstanding[replica] += 1
        request = asyncio.ensure_future(_resolve(self.replicas[replica].remote(query)))
        request.add_done_callback(lambda _done: self._finished(replica))
        return request

    def _finished(self, replica: int) -> None:
        self.outstanding[replica] -= 1

    # ------------------------------------------------------------------ baselines
    async def _single(self, query_id: int, query: np.ndarray) -> Dict[str, Any]:
        slot = self._pick()
        try:
            value = await asyncio.wait_for(self._send(slot, query), timeout=self.timeout_s)
            return {"query_id": query_id, "group_id": None, "position": None, **_result("direct", f"base:{slot}", value, 0.0)}
        except Exception as exc:
            return {"query_id": query_id, "group_id": None, "position": None,
                    **_result("failed", f"base:{slot}", None, 0.0, f"replica {slot} failed: {type(exc).__name__}")}

    async def _hedged(self, query_id: int, query: np.ndarray) -> Dict[str, Any]:
        first = self._pick()
        started = time.perf_counter()
        tasks = {self._send(first, query): first}
        hedged, errors = False, []
        while tasks and time.perf_counter() - started < self.timeout_s:
            elapsed = time.perf_counter() - started
            wait = (self.deadline_s - elapsed) if not hedged else (self.timeout_s - elapsed)
            done, _ = await asyncio.wait(tasks, timeout=max(wait, 0.0), return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                slot = tasks.pop(task)
                try:
                    value = task.result()
                except Exception as exc:
                    errors.append(f"replica {slot} failed: {type(exc).__name__}")
                    continue
                for other in tasks:
                    other.cancel()
                result = _result("direct", f"base:{slot}", value, 0.0)
                return {"query_id": query_id, "group_id": None, "position": None, "hedged": hedged, **result}
            if not hedged and (not done or not tasks):
                # the deadline passed (or the first replica failed): send a duplicate elsewhere
                hedged = True
                backup = self._pick(exclude=(first,))
                tasks[self._send(backup, query)] = backup
        for task in tasks:
            task.cancel()
        reason = "; ".join(errors) or "timeout"
        return {"query_id": query_id, "group_id": None, "position": None, "hedged": hedged,
                **_result("failed", None, None, 0.0, reason)}


def _result(path: str, source: Optional[str], output, coder_s: float, reason: Optional[str] = None) -> Dict[str, Any]:
    if output is None:
        return {"path": path, "replica": source, "prediction": None, "output": None, "coder_seconds": coder_s, "reason": reason}
    output = np.asarray(output, dtype=np.float32)
    return {"path": path, "replica": source, "prediction": int(output.argmax()), "output": output,
            "coder_seconds": coder_s, "reason": reason}
