"""Each number's range, declared once on its field, checked where a config or a command's options are
built and shown in ``--help``; and the output folders, checked before anything is written.

A field's ``metadata`` may hold ``min`` / ``max`` (inclusive) and ``gt`` / ``lt`` (exclusive). Every
number (and each number of a list field) must also be finite and of its field's type, bounds or
not: NaN, infinities and booleans are refused whatever the field. A failure is a
:class:`~parity_ray.errors.UsageError` of one line that names the field (or its flag) and the range.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from pathlib import Path
from typing import Any, Callable, Optional

from .errors import UsageError

BOUND_KEYS = ("min", "gt", "max", "lt")


def _kinds(annotation) -> tuple:
    """``(the numeric types a value may have, is_list)`` of an annotation (``()`` when not numeric)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Union and len(args) == 1:
        annotation = args[0]
    is_list = typing.get_origin(annotation) in (list, typing.List)
    if is_list:
        annotation = typing.get_args(annotation)[0]
    members = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Union else (annotation,)
    return tuple(t for t in members if t in (int, float)), is_list


def bound_text(metadata) -> str:
    """``">= 1"``, ``"> 0"``, ``"in [0, 1)"``: the range ``metadata`` declares ("" when none)."""
    low = (f"[{metadata['min']}", f">= {metadata['min']}") if "min" in metadata else (
        (f"({metadata['gt']}", f"> {metadata['gt']}") if "gt" in metadata else None)
    high = (f"{metadata['max']}]", f"<= {metadata['max']}") if "max" in metadata else (
        (f"{metadata['lt']})", f"< {metadata['lt']}") if "lt" in metadata else None)
    if low and high:
        return f"in {low[0]}, {high[0]}"
    return (low or high or ("", ""))[1]


def violated(value, metadata) -> str:
    """The bound of ``metadata``'s range that ``value`` breaks (``">= 2"``, ``"< 1"``), or "" when none."""
    if ("min" in metadata and value < metadata["min"]) or ("gt" in metadata and value <= metadata["gt"]):
        return bound_text({key: metadata[key] for key in ("min", "gt") if key in metadata})
    if ("max" in metadata and value > metadata["max"]) or ("lt" in metadata and value >= metadata["lt"]):
        return bound_text({key: metadata[key] for key in ("max", "lt") if key in metadata})
    return ""


def check_value(label: str, value: Any, field: dataclasses.Field, annotation) -> None:
    """``value`` of ``field`` (typed ``annotation``) is a finite number of its type within its bounds."""
    kinds, is_list = _kinds(annotation)
    if not kinds or value is None:
        return
    values = value if is_list and isinstance(value, (list, tuple)) else [value]
    for item in values:
        if isinstance(item, str) and str in typing.get_args(annotation):
            continue  # a word the field also takes (--deadline-ms auto)
        if isinstance(item, bool) or not isinstance(item, kinds if float not in kinds else (int, float)):
            expected = "an integer" if kinds == (int,) else "a number"
            raise UsageError(f"{label} must be {expected}, got {type(item).__name__} {item!r}"[:300])
        if isinstance(item, float) and not math.isfinite(item):
            raise UsageError(f"{label} must be a finite number, got {item}")
        broken = violated(item, field.metadata)
        if broken:
            shown = item if abs(item) < 1e15 else f"{item:.3g}"
            raise UsageError(f"{label} {'values ' if is_list else ''}must be {broken}, got {shown}")


def check_fields(obj, label: Optional[Callable[[dataclasses.Field], str]] = None):
    """Every numeric field of the dataclass ``obj`` checked (:func:`check_value`); returns ``obj``.

    ``label(field)`` names a field in messages (its flag for a command's options; the key for a config).
    """
    hints = typing.get_type_hints(type(obj))
    for field in dataclasses.fields(obj):
        check_value(label(field) if label else field.name, getattr(obj, field.name), field, hints[field.name])
    return obj


def check_output_dir(path: Optional[str], label: str) -> None:
    """The folder ``path`` exists or can be made, and can be written: else one line naming it and why.

    Nothing is left behind: a folder made to prove it can be is removed again. Remote URIs are left to
    their writers.
    """
    from . import storage

    if not path or storage.is_remote(str(path)):
        return
    shown = _printable(str(path))
    if "\0" in str(path):
        raise UsageError(f"{label} '{shown}' cannot be created: it holds a NUL character")
    target = Path(os.path.expanduser(str(path))).absolute()
    missing = []
    existing = target
    while not os.path.lexists(existing):  # (lexists: a name too long for the filesystem is simply not there)
        missing.append(existing)
        existing = existing.parent
    if not existing.is_dir():
        what = "a file, not a folder" if existing.is_file() else "not a folder"
        raise UsageError(f"{label} '{shown}' cannot be created: '{_printable(str(existing))}' is {what}")
    probe = missing[-1] if missing else None
    try:
        if probe is not None:
            probe.mkdir()
            probe.rmdir()
        elif not os.access(existing, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
        else:
            import tempfile

            with tempfile.TemporaryFile(dir=existing):
                pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(f"{label} '{shown}' cannot be {'created' if probe is not None else 'written'}: {reason}") from None


def _printable(text: str, limit: int = 120) -> str:
    """``text`` for a one-line message: control characters escaped, a long one shortened."""
    text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."

__all__ = ["BOUND_KEYS", "bound_text", "check_fields", "check_output_dir", "check_value", "violated"]
