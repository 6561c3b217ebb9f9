"""``none``: k base replicas, no redundancy; a query waits for its one replica."""

from __future__ import annotations

import asyncio

from parity_ray.actors.modes import BASE, ServingMode, answer_record, register_mode


@register_mode("none")
class NoRedundancy(ServingMode):

    rank, single_copy, uses_deadline = 5, True, False
    @classmethod
    def workers(cls, layout, has_parity):
        return {"base": [BASE] * layout.k}

    async def answer(self, query_id, query):
        slot = self.frontend.pick("base")
        try:
            value = await asyncio.wait_for(self.frontend.send("base", slot, query), timeout=self.timeout_s)
        except asyncio.TimeoutError:
            return answer_record("failed", None, reason=f"timeout: replica {slot} did not answer in {self.timeout_s:g} s")
        except Exception as exc:
            return answer_record("failed", None, reason=f"replica {slot} failed: {type(exc).__name__}")
        return answer_record("direct", f"base:{slot}", value)
