"""Torch files (checkpoints, cached base models, exported runs): saved atomically, loaded weights-only."""

from __future__ import annotations

import io
import os
from typing import Any, Union

import torch

from .atomic import atomic_write_bytes
from .errors import UsageError

PathLike = Union[str, os.PathLike]


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
