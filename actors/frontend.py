"""``CodedFrontend``: one query interface for every serving mode, so modes differ in one thing only.

* ``coded``: queries are grouped into k-groups (a partial group is flushed after ``group_wait_s``,
  its empty slots padded with copies); the run's encoder makes r parity queries; the k queries go
  to k base replicas and the parities to r parity replicas. Each query is answered with its own
  output, or, once ``deadline_s`` has passed and any k of the k+r outputs are in, with the
  decoded output.
* ``replication``: the same k+r instances all run the base model and share the load (the
  published "equal resources" baseline).
* ``hedged``: the same k+r base replicas; a query still unanswered at the deadline is sent again
  to another replica, and the first answer wins ("The Tail at Scale").
* ``none``: k base replicas, no redundancy.

Every query ends as exactly one of ``direct``, ``decoded`` or ``failed`` (with a reason).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from ray import serve

MODES = ("coded", "replication", "hedged", "none")


async def _resolve(response):
    return await response


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
        self.decoder = create_decoder(config["decoder"], k=self.k, r=self.r).eval()
        self.pending: List[tuple] = []
        self.flush_task: Optional[asyncio.Task] = None
        self.group_ids = itertools.count()
        self.round_robin = itertools.count()

    # ------------------------------------------------------------------ entry point
    async def __call__(self, query_id: int, query: np.ndarray) -> Dict[str, Any]:
        if self.mode == "coded":
            future = asyncio.get_running_loop().create_future()
            self.pending.append((query_id, query, future))
            if len(self.pending) >= self.k:
                self._dispatch()
            elif self.flush_task is None:
                self.flush_task = asyncio.create_task(self._flush_after_wait())
            return await future
        if self.mode == "hedged":
            return await self._hedged(query_id, query)
        return await self._single(query_id, query)

    # ------------------------------------------------------------------ coded
    async def _flush_after_wait(self) -> None:
        await asyncio.sleep(self.group_wait_s)
        self.flush_task = None
        if self.pending:
            self._dispatch()

    def _dispatch(self) -> None:
        members, self.pending = self.pending[: self.k], self.pending[self.k :]
        if self.flush_task is not None and not self.pending:
            self.flush_task.cancel()
            self.flush_task = None
        asyncio.create_task(self._serve_group(next(self.group_ids), members))

    async def _serve_group(self, group_id: int, members: List[tuple]) -> None:
        started = time.perf_counter()
        queries = [m[1] for m in members] + [members[0][1]] * (self.k - len(members))  # pad a partial group
        with torch.no_grad():
            parity_queries = self.encoder(torch.from_numpy(np.stack(queries))[None])[0].numpy()
        encode_s = time.perf_counter() - started
        tasks = {asyncio.ensure_future(_resolve(self.replicas[i].remote(queries[i]))): ("data", i) for i in range(self.k)}
        tasks.update({asyncio.ensure_future(_resolve(self.parities[j].remote(parity_queries[j]))): ("parity", j)
                      for j in range(self.r)})
        data: Dict[int, np.ndarray] = {}
        parity: Dict[int, np.ndarray] = {}
        errors: Dict[int, str] = {}
        unanswered = set(range(len(members)))
        deadline, hard_stop = started + self.deadline_s, started + self.timeout_s

        def answer(i: int, result: Dict[str, Any]) -> None:
            unanswered.discard(i)
            qid, _, future = members[i]
            if not future.done():
                future.set_result({"query_id": qid, "group_id": group_id, "position": i, **result})

        while unanswered:
            now = time.perf_counter()
            if now >= deadline and len(data) + len(parity) >= self.k:
                decode_started = time.perf_counter()
                decoded = self._decode(data, parity)
                decode_s = time.perf_counter() - decode_started
                for i in sorted(unanswered):
                    answer(i, _result("decoded", f"parity:{sorted(parity)}", decoded[i], encode_s + decode_s))
                break
            if not tasks or now >= hard_stop:
                break
            wait = (deadline if now < deadline else hard_stop) - now
            done, _ = await asyncio.wait(tasks, timeout=max(wait, 0.0), return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                kind, slot = tasks.pop(task)
                try:
                    value = task.result()
                except Exception as exc:  # a crashed or unreachable replica: the slot is erased
                    if kind == "data":
                        errors[slot] = f"replica {slot} failed: {type(exc).__name__}"
                    continue
                if kind == "parity":
                    parity[slot] = value
                    continue
                data[slot] = value
                if slot in unanswered:
                    answer(slot, _result("direct", f"base:{slot}", value, encode_s))
        for i in sorted(unanswered):
            reason = errors.get(i) or ("timeout" if time.perf_counter() >= hard_stop else "not decodable")
            if len(data) + len(parity) < self.k:
                reason += f"; only {len(data) + len(parity)} of {self.k + self.r} outputs arrived"
            answer(i, _result("failed", None, None, encode_s, reason))
        for task in tasks:
            task.cancel()

    def _decode(self, data: Dict[int, np.ndarray], parity: Dict[int, np.ndarray]) -> np.ndarray:
        n = len(next(iter({**data, **parity}.values())))
        outputs = torch.zeros(1, self.k, n)
        parity_outputs = torch.zeros(1, self.r, n)
        erased = torch.ones(1, self.k, dtype=torch.bool)
        arrived = torch.zeros(1, self.r, dtype=torch.bool)
        for i, value in data.items():
            outputs[0, i], erased[0, i] = torch.from_numpy(np.asarray(value)), False
        for j, value in parity.items():
            parity_outputs[0, j], arrived[0, j] = torch.from_numpy(np.asarray(value)), True
        with torch.no_grad():
            return self.decoder.decode(outputs, parity_outputs, erased, arrived)[0].numpy()

    # ------------------------------------------------------------------ baselines
    async def _single(self, query_id: int, query: np.ndarray) -> Dict[str, Any]:
        slot = next(self.round_robin) % len(self.replicas)
        try:
            value = await asyncio.wait_for(_resolve(self.replicas[slot].remote(query)), timeout=self.timeout_s)
            return {"query_id": query_id, "group_id": None, "position": None, **_result("direct", f"base:{slot}", value, 0.0)}
        except Exception as exc:
            return {"query_id": query_id, "group_id": None, "position": None,
                    **_result("failed", f"base:{slot}", None, 0.0, f"replica {slot} failed: {type(exc).__name__}")}

    async def _hedged(self, query_id: int, query: np.ndarray) -> Dict[str, Any]:
        first = next(self.round_robin) % len(self.replicas)
        started = time.perf_counter()
        tasks = {asyncio.ensure_future(_resolve(self.replicas[first].remote(query))): first}
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
                backup = (first + 1 + next(self.round_robin) % (len(self.replicas) - 1)) % len(self.replicas)
                tasks[asyncio.ensure_future(_resolve(self.replicas[backup].remote(query)))] = backup
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
