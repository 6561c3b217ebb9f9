"""Parity models that fail on purpose, entered through class-specs, to exercise fault tolerance."""

from __future__ import annotations

import os
import time

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


class SlowMLP(BaseMLP):
    """Sleeps ``delay_s`` in every training forward pass: a few epochs that last long enough for a test
    to act mid-run (kill a driver, remove a node) without training hundreds of epochs."""

    def __init__(self, input_shape, num_classes, delay_s: float = 0.02):
        super().__init__(input_shape, num_classes)
        self.delay_s = delay_s

    def forward(self, x):
        if self.training:
            time.sleep(self.delay_s)
        return super().forward(x)


class BadInputMLP(BaseMLP):
    """Raises a ``UsageError`` in its first training step (bad input only a trial can see); each
    attempt appends a line to ``marker``, so a test can count the attempts."""

    def __init__(self, input_shape, num_classes, marker: str):
        super().__init__(input_shape, num_classes)
        self.marker = marker

    def forward(self, x):
        from parity_ray.errors import UsageError

        with open(self.marker, "a") as f:
            f.write("attempt\n")
        raise UsageError("parity width 7 cannot hold a 2-query group; valid widths: multiples of 2")
