"""Progress of long steps: a bar on a terminal, a plain line every few seconds anywhere else.

A log piped into a file or collected by CI should hold lines a machine can read, not the hundreds
of carriage-return frames a bar draws; so a bar draws only when its stream is a terminal (tqdm's
``disable=None`` rule) and otherwise ``LineProgress`` writes ``desc: n/total unit (rate, eta)``
at most once every ``every_s`` seconds, and once at the end. ``enabled=False`` (``--no-progress``)
silences both.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator, Optional, TextIO

EVERY_S = 5.0  # seconds between two progress lines when the stream is not a terminal


class LineProgress:
    """tqdm's small interface (iterate, ``update``, ``close``, a context manager) writing whole lines."""

    def __init__(self, iterable: Optional[Iterable] = None, *, total: Optional[int] = None, desc: str = "",
                 unit: str = "it", stream: Optional[TextIO] = None, every_s: Optional[float] = None):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = EVERY_S if every_s is None else every_s
        self.n = 0
        self.started = self.last = time.monotonic()
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        try:
            for item in self.iterable or ():
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: Any) -> bool:
        self.close()
        return False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self._write(now)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            now = time.monotonic()
            if self.n and now - self.started >= self.every_s:  # a short step needs no closing line
                self._write(now, done=True)

    def line(self, now: float, done: bool = False) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.n / elapsed
        of = f"/{self.total}" if self.total else ""
        text = f"{self.desc}: {self.n}{of} {self.unit} in {elapsed:.0f} s ({rate:.1f} {self.unit}/s"
        if not done and self.total and rate > 0:
            text += f", about {(self.total - self.n) / rate:.0f} s left"
        return text + (", done)" if done else ")")

    def _write(self, now: float, done: bool = False) -> None:
        self.stream.write(self.line(now, done) + "\n")
        self.stream.flush()


def progress(iterable: Optional[Iterable] = None, *, total: Optional[int] = None, desc: str = "", unit: str = "it",
             enabled: bool = True, stream: Optional[TextIO] = None, every_s: Optional[float] = None):
    """The progress of a long step on ``stream`` (stderr): a tqdm bar on a terminal, ``LineProgress``
    elsewhere, nothing when not ``enabled``. Use as tqdm: iterate over it, or ``update`` then ``close``."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    if enabled and isatty is not None and isatty():
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, file=stream)
    if not enabled:
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, disable=True)  # a no-op with the same interface
    return LineProgress(iterable, total=total, desc=desc, unit=unit, stream=stream, every_s=every_s)
