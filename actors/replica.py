"""``ModelReplica``: one serving slot (a base model copy or a parity model) as a Ray Serve deployment.

Requests are batched with ``@serve.batch``; the slot's straggler/fault models come through
``user_config`` (``reconfigure`` swaps them without a redeploy).
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any, Dict, List

import numpy as np
import torch
from ray import serve

from parity_ray.actors.stragglers import StragglerState


@serve.deployment(max_ongoing_requests=256, health_check_period_s=1.0, health_check_timeout_s=5.0)
class ModelReplica:
    def __init__(self, run: Dict[str, Any], role: str, index: int, n_replicas: int, parity_index: int = 0,
                 max_batch_size: int = 16, batch_wait_s: float = 0.002, num_threads: int = 1):
        from parity_ray.serving import ServedRun, load_model

        torch.set_num_threads(num_threads)
        self.role, self.index, self.n_replicas = role, index, n_replicas
        self.model = load_model(ServedRun(**run), role, parity_index)
        self.infer.set_max_batch_size(max_batch_size)
        self.infer.set_batch_wait_timeout_s(batch_wait_s)
        self.stragglers = StragglerState([], index, n_replicas, seed=0)
        gc.freeze()  # the start-up heap (torch, the model) stays out of every later collection pause

    def reconfigure(self, user_config: Dict[str, Any]) -> None:
        self.stragglers = StragglerState(user_config.get("stragglers", []), self.index, self.n_replicas,
                                         seed=int(user_config.get("seed", 0)))

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def infer(self, queries: List[np.ndarray]) -> List[np.ndarray]:
        started = time.perf_counter()
        with torch.no_grad():
            outputs = self.model(torch.from_numpy(np.stack(queries))).numpy()
        # One draw per batch: a slowed batch delays every request in it, as a slow GPU would.
        delay = self.stragglers.extra_delay(time.perf_counter() - started)
        if delay > 0:
            await asyncio.sleep(delay)
        return list(outputs)

    async def __call__(self, query: np.ndarray) -> np.ndarray:
        self.stragglers.before_request()
        return await self.infer(query)

    def node_id(self) -> str:
        """The Ray node this replica runs on (its failure domain)."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def check_health(self) -> None:
        return None
