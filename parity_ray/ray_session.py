"""The one place the platform starts and stops Ray (tune, simulate, serve, sweep, quickstart)."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

from .errors import UsageError


@contextlib.contextmanager
def ray_running(address: Optional[str] = None, **init_kwargs: Any) -> Iterator[bool]:
    """Ray for the ``with`` block: the one this process is already connected to, left running
    afterwards, or one started (or joined, with ``address``) here and shut down at the end.

    Yields whether the block owns its Ray. ``init_kwargs`` (say ``num_cpus``) apply only when Ray
    is started here. A program that runs several commands in one process (a notebook, a test
    session) therefore pays for one Ray, not one per command.
    """
    import ray

    owns = not ray.is_initialized()
    if owns:
        _init_ray(address, **init_kwargs)
    try:
        yield owns
    finally:
        if owns:
            ray.shutdown()


def _init_ray(address: Optional[str], **init_kwargs: Any) -> None:
    """Connect to the Ray cluster at ``address``, or start a local Ray when it is None, with no dashboard.

    On a cluster (``address`` given) the workers' log lines stream to this driver, so that ``ray job
    logs`` of a submitted job holds every trial's progress; on a local Ray they stay in Ray's
    session logs and the console keeps to the driver's own concise lines.
    """
    import ray

    # Ray's token authentication stays as Ray sets it (on for local clusters since 2.59): turning it off
    # would let anyone who reaches the job API's port run commands (docs/security.md).
    kwargs = {"include_dashboard": False, "log_to_driver": bool(address), "configure_logging": True,
              "logging_level": "warning", **init_kwargs}
    try:
        ray.init(address=address or "local", **kwargs)
    except ConnectionError as exc:
        raise UsageError(f"cannot connect to Ray at '{address}': {exc}") from None
