"""``coded-eager``: the parity-models paper's policy, as a variant of ``coded``.

A full group's coded queries are sent as soon as its k-th query arrives (a partial group still seals
``group_wait_ms`` after its first query), and each query is answered by whichever comes first, its
own output or its decoded one: there is no deadline to wait out before decoding. ``coded`` waits
``group_wait_ms`` before encoding a full group and ``deadline_ms`` before answering with a decoded
output, which spares the coded workers and the decoder when nothing is slow; this mode spends them
on every group to answer a straggler's query as early as the code allows.
"""

from __future__ import annotations

from parity_ray.actors.modes import register_mode
from parity_ray.actors.modes.coded import Coded


@register_mode("coded-eager")
class CodedEager(Coded):

    rank = 1
    seal_when_full = True
    uses_deadline = False  # answers at the first of its own and its decoded output

    @classmethod
    def timings(cls, options):
        timings = super().timings(options)  # group_wait_s still follows deadline_ms (a partial group's seal; with auto, the adaptive deadline)
        timings["deadline_s"] = 0.0  # decode as soon as any k of the n outputs are in
        return timings
