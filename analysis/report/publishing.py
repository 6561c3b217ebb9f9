"""Publishing a rendered report: whole or not at all.

Locally the report is rendered into a staging folder beside the target, which then replaces the
target by a rename (only a folder that holds a report we wrote is replaced); on S3 every other file
is uploaded first and ``index.html`` last.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, List

from parity_ray import storage
from parity_ray.errors import UsageError

GENERATOR = "parity-ray report"  # marks a folder as a report we may replace


def _check_local_target(target: Path) -> None:
    """Refuse a target we cannot write or must not replace, before any work is done."""
    if target.exists() and not target.is_dir():
        raise UsageError(f"report target '{target}' is a file, not a folder; give a new or empty folder with --out")
    if target.is_dir() and any(target.iterdir()) and not _is_report(target):
        raise UsageError(f"report target '{target}' is a folder holding other files; give a new or empty folder with --out")
    ancestor = target
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"report target '{target}' cannot be created: '{ancestor}' is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"report target '{target}' is not writable: no write permission on '{ancestor}'")


def _is_report(folder: Path) -> bool:
    index = folder / "index.html"
    return index.is_file() and f'content="{GENERATOR}"' in index.read_text(errors="replace")[:2000]


def _publish_local(target: Path, render_into: Callable[[Path], List[str]]) -> List[str]:
    """Render into a staging folder beside ``target``, then swap it in (an old report is replaced)."""
    target = target.expanduser().absolute()
    _check_local_target(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
    except OSError as exc:
        raise UsageError(f"report target '{target}' is not writable: {exc.strerror or exc}") from None
    try:
        files = render_into(staging)
        staging.chmod(0o755)  # mkdtemp makes it private; a report is meant to be shared
        if target.exists():
            # Same filesystem, so both renames are atomic; the old report goes only once the new one is whole.
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / "report")
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
        return files
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _upload(staging: Path, files: List[str], target: str) -> None:
    """Upload a rendered report; index.html last, so it never links to files not yet there."""
    from concurrent.futures import ThreadPoolExecutor

    def put(name: str) -> None:
        storage.write_bytes(storage.join(target, name), (staging / name).read_bytes())

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:  # data files and sheets: many small objects
            list(pool.map(put, [name for name in files if name != "index.html"]))
        put("index.html")
    except OSError as exc:
        raise UsageError(f"report target '{target}' is not writable: {exc}") from None
