"""What ties a result to its making: the library versions recorded in every artifact, and stable
hashes of configs and files (cache keys, ids)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from typing import Any, Union

PathLike = Union[str, os.PathLike]

SCHEMA_VERSION = 2  # of the result tables (results.py); 2: codes of every family, erasure patterns up to r


def json_column(value: Any) -> str:
    """A value as a table's JSON string column holds it: stable (sorted keys), anything as a string."""
    return json.dumps(value, sort_keys=True, default=str)

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
    import torch

    from . import __version__

    versions = {"parity_ray": __version__, "python": platform.python_version(), "torch": str(torch.__version__)}
    versions.update(dict(_installed_versions()))
    return versions


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
