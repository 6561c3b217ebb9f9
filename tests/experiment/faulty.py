"""Parity models that fail on purpose, entered through class-specs, to exercise fault tolerance."""

from __future__ import annotations

import os

from parity_ray.models import BaseMLP


class CrashOnceMLP(BaseMLP):
    """Raises once, after ``after_calls`` forward passes, in the first attempt only (``marker`` records it)."""

    def __init__(self, input_shape, num_classes, marker: str, after_calls: int = 25):
        super().__init__(input_shape, num_classes)
        self.marker, self.after_calls, self.calls = marker, after_calls, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.after_calls and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            raise RuntimeError("injected failure (first attempt only)")
        return super().forward(x)


class AlwaysCrashMLP(BaseMLP):
    def forward(self, x):
        raise RuntimeError("injected failure (every attempt)")
