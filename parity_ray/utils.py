"""Shared plumbing: atomic writes, seeding, library versions, cache folders."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import torch

PathLike = Union[str, os.PathLike]


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one.

    The temp file sits in the same folder (same filesystem) and is fsynced before
    ``os.replace``, which is atomic on POSIX.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_torch_save(obj: Any, path: PathLike) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_torch_safely(source: Union[bytes, PathLike], label: str, map_location: Any = "cpu") -> Any:
    """``torch.load(source, weights_only=True)``: tensors and plain values only, never code.

    A pickle can name any callable to run while it is read (a tampered checkpoint); torch's
    weights-only unpickler refuses such a file before calling anything. Every refusal, and any
    unreadable file, is a one-line :class:`UsageError` naming ``label`` (the file's path or URI).
    """
    from .errors import UsageError

    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        return torch.load(stream, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise UsageError(f"'{label}' cannot be loaded safely (tensors and plain values only): {_load_error(exc)}") from None


def _load_error(exc: Exception) -> str:
    """The informative line of a torch.load error: the refused global, not torch's advice about it."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "Unsupported" in line]
    return ((named or lines or [type(exc).__name__])[0])[:300]


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
    import sys

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in LOGGER_NAMES:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False  # Ray configures the root logger; ours stay as they are



_DISTRIBUTIONS = {"torchvision": "torchvision", "torchaudio": "torchaudio", "ray": "ray", "numpy": "numpy",
                  "pandas": "pandas", "pyarrow": "pyarrow", "sklearn": "scikit-learn"}


@functools.lru_cache(maxsize=1)
def _installed_versions() -> tuple:
    """Versions from the installed packages' metadata: no import (importing them all costs seconds)."""
    from importlib import metadata

    found = []
    for name, distribution in _DISTRIBUTIONS.items():
        try:
            version = metadata.version(distribution)
        except metadata.PackageNotFoundError:  # an optional library that is not installed is recorded, not fatal
            version = None
        found.append((name, version))
    return tuple(found)


def library_versions() -> dict:
    """Versions recorded in every artifact, so a result can be traced to its stack."""
    from . import __version__

    versions = {"parity_ray": __version__, "python": platform.python_version(), "torch": str(torch.__version__)}
    versions.update(dict(_installed_versions()))
    return versions


def cache_dir(*parts: str) -> Path:
    """A writable per-user cache folder: ``$PARITY_RAY_CACHE`` or ``$XDG_CACHE_HOME/parity_ray``."""
    root = os.environ.get("PARITY_RAY_CACHE")
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "parity_ray")
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def stable_hash(obj: Any, length: int = 10) -> str:
    """A short hash of a JSON-able object, stable across processes and machines."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        from .errors import UsageError

        raise UsageError(f"device '{name}' asked for, but CUDA is not available; valid choices: auto, cpu")
    return device


@contextlib.contextmanager
def file_lock(path: PathLike) -> Iterator[None]:
    """An exclusive advisory lock (``fcntl.flock``) held for the ``with`` block.

    Used so that two processes needing the same cached base model train it once.
    """
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def init_ray(address: Optional[str] = None, **init_kwargs: Any) -> None:
    """Connect to the Ray cluster at ``address``, or start a local Ray when it is None.

    The one place the platform starts Ray (tune, simulate, serve, sweep), with no dashboard. On a
    cluster (``address`` given) the workers' log lines stream to this driver, so that ``ray job
    logs`` of a submitted job holds every trial's progress; on a local Ray they stay in Ray's
    session logs and the console keeps to the driver's own concise lines.
    """
    import ray

    from .errors import UsageError

    # Ray's token authentication stays as Ray sets it (on for local clusters since 2.59): turning it off
    # would let anyone who reaches the job API's port run commands (docs/security.md).
    kwargs = {"include_dashboard": False, "log_to_driver": bool(address), "configure_logging": True,
              "logging_level": "warning", **init_kwargs}
    try:
        ray.init(address=address or "local", **kwargs)
    except ConnectionError as exc:
        raise UsageError(f"cannot connect to Ray at '{address}': {exc}") from None


@contextlib.contextmanager
def ray_running(address: Optional[str] = None, **init_kwargs: Any) -> Iterator[bool]:
    """Ray for the ``with`` block: the one this process is already connected to, left running
    afterwards, or one started (or joined, with ``address``) here and shut down at the end.

    Yields whether the block owns its Ray. ``init_kwargs`` (say ``num_cpus``) apply only when a
    local Ray is started here. A program that runs several commands in one process (a notebook, a
    test session) therefore pays for one Ray, not one per command.
    """
    import ray

    owns = not ray.is_initialized()
    if owns:
        init_ray(address, **init_kwargs)
    try:
        yield owns
    finally:
        if owns:
            ray.shutdown()
