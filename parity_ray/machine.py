"""What this machine offers a command: the torch device to compute on, and a per-user cache folder."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import UsageError


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU) or a torch device name this machine has."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device '{name}' asked for, but CUDA is not available; valid choices: auto, cpu")
    return device


def cache_dir(*parts: str) -> Path:
    """A writable per-user cache folder: ``$PARITY_RAY_CACHE`` or ``$XDG_CACHE_HOME/parity_ray``."""
    root = os.environ.get("PARITY_RAY_CACHE")
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "parity_ray")
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
