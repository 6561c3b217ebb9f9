"""``coded-hedged``: ``coded``, plus a duplicate of a query to another base replica when its group
cannot be decoded by a second deadline (``hedge_deadline_ms``, default twice ``deadline_ms``).

Coding covers one slow replica per group at the cost of one coded request per group; hedging
covers what coding cannot (a group with more than r outputs missing, or a coded worker that is
itself slow) at the cost of a duplicate for those queries only. The first answer wins: its own
replica's, the decoded one, or the duplicate's. Needs a systematic code (the duplicate goes to a
base replica).
"""

from __future__ import annotations

from parity_ray.actors.modes import register_mode
from parity_ray.actors.modes.coded import Coded, _ok


@register_mode("coded-hedged")
class CodedHedged(Coded):

    rank, simulated_by_default = 2, False  # kept out of simulate's default set, which predates it (sweeps run every mode)
    needs_systematic = True  # its duplicates go to base replicas, which a non-systematic code does not use

    def __init__(self, frontend, options):
        super().__init__(frontend, options)
        self.hedges = 0

    @classmethod
    def timings(cls, options):
        timings = super().timings(options)
        hedge_ms = options.get("hedge_deadline_ms")
        timings["hedge_s"] = (float(hedge_ms) / 1000.0) if hedge_ms else 2.0 * timings["deadline_s"]
        return timings

    @property
    def hedge_s(self) -> float:
        """``hedge_deadline_ms``, else twice the deadline (with ``--deadline-ms auto``, twice the current one)."""
        if self.options.get("hedge_deadline_ms") or self.adaptive is None:
            return self._hedge_s
        return 2.0 * self.deadline_s

    @hedge_s.setter
    def hedge_s(self, value: float) -> None:
        self._hedge_s = value

    def stats(self):
        return {**super().stats(), "hedges": self.hedges}

    def _extra_answer(self, group, position, extra):
        for task, replica in extra:
            if _ok(task):
                return f"base:{replica}", task.result()
        return None

    def _maybe_hedge(self, group, position, arrived, now, extra):
        if extra or now < arrived + self.hedge_s:
            return
        replica = self.frontend.pick("base", exclude=(group.replica_of[position],))
        extra.append((self.frontend.send("base", replica, group.queries[position]), replica))
        self.hedges += 1

    def _next_event(self, arrived, now, extra):
        return float("inf") if extra else max(arrived + self.hedge_s - now, 0.0)
