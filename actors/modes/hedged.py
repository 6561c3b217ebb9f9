"""``hedged``: the k + r base replicas of ``replication``; a query still unanswered at the deadline
is sent again to another replica, and the first answer wins ("The Tail at Scale")."""

from __future__ import annotations

import asyncio

from parity_ray.actors.modes import BASE, ServingMode, answer_record, clock, register_mode


@register_mode("hedged")
class Hedged(ServingMode):

    rank = 4

    @classmethod
    def workers(cls, layout, has_parity):
        return {"base": [BASE] * layout.n}

    async def answer(self, query_id, query):
        frontend = self.frontend
        first = frontend.pick("base")
        started = clock()
        tasks = {frontend.send("base", first, query): first}
        hedged, errors = False, []
        while tasks:
            elapsed = clock() - started
            if elapsed >= self.timeout_s:
                break
            wait = (self.deadline_s - elapsed) if not hedged else (self.timeout_s - elapsed)
            done, _ = await asyncio.wait(tasks, timeout=max(wait, 0.0), return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                slot = tasks.pop(task)
                if task.exception() is not None:
                    errors.append(f"replica {slot} failed: {type(task.exception()).__name__}")
                    continue
                for other in tasks:
                    other.cancel()
                return answer_record("direct", f"base:{slot}", task.result(), hedged=hedged)
            if not hedged and (not done or not tasks):
                # the deadline passed (or the first replica failed): a duplicate to another replica
                hedged = True
                backup = frontend.pick("base", exclude=(first,))
                tasks[frontend.send("base", backup, query)] = backup
        for task in tasks:
            task.cancel()
        reason = "; ".join(errors) or f"timeout: no answer in {self.timeout_s:g} s"
        return answer_record("failed", None, reason=reason, hedged=hedged)
