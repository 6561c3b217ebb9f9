"""Progress logging: the ``parity_ray`` logger, and the CLI's stderr set-up for it."""

from __future__ import annotations

import logging
import sys

LOGGER_NAMES = ("parity_ray",)  # parity_ray.actors and parity_ray.analysis log under it
LOG_LEVELS = ("debug", "info", "warning", "error")


def stderr_log(message: str) -> None:
    """The default progress log of long-running commands: the ``parity_ray`` logger at INFO.

    The CLI sends it to stderr (``--log-level``), so --json output stays clean on stdout; a
    program using the library configures ``logging`` as it likes.
    """
    logging.getLogger("parity_ray").info(message)


def configure_logging(level: str = "info") -> None:
    """Progress lines of parity_ray (its actors and analysis included) to stderr, as bare messages, at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in LOGGER_NAMES:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False  # Ray configures the root logger; ours stay as they are
