"""``replication``: the k + r instances of coded serving all run the base model and share the load
(the published "equal resources" baseline)."""

from __future__ import annotations

from parity_ray.actors.modes import BASE, register_mode
from parity_ray.actors.modes.none import NoRedundancy


@register_mode("replication")
class Replication(NoRedundancy):

    rank = 3
    @classmethod
    def workers(cls, layout, has_parity):
        return {"base": [BASE] * layout.n}
