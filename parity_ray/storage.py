"""Experiment storage through pyarrow filesystems: local folders, NFS mounts, ``s3://`` URIs.

S3 honours the usual AWS variables, plus ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``)
for S3-compatible servers (MinIO, moto). Local writes are atomic (temp + rename); a
remote object appears whole when its upload completes, which is atomic for readers too.
"""

from __future__ import annotations

import errno
import io
import os
import posixpath
import shutil
import tempfile
from pathlib import Path
from typing import List, Tuple
from urllib.parse import urlparse

import pyarrow.fs as pafs

from .atomic import atomic_write_bytes
from .errors import UsageError

NETWORK_FILESYSTEMS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "ceph", "glusterfs", "gpfs", "beegfs",
                       "fuse.sshfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.juicefs", "efs", "9p", "virtiofs"}


def is_remote(uri: str) -> bool:
    scheme = urlparse(str(uri)).scheme
    return len(scheme) > 1 and scheme != "file"  # 'c:' style drive letters are not schemes


def resolve(uri: str) -> Tuple[pafs.FileSystem, str]:
    """``(filesystem, path within it)`` for a local path or a URI."""
    uri = str(uri)
    parsed = urlparse(uri)
    if not is_remote(uri):
        local = parsed.path if parsed.scheme == "file" else uri
        return pafs.LocalFileSystem(), str(Path(local).expanduser().resolve())
    if parsed.scheme == "s3":
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        kwargs = {}
        if endpoint:
            endpoint_parsed = urlparse(endpoint)
            kwargs["endpoint_override"] = endpoint_parsed.netloc or endpoint
            kwargs["scheme"] = endpoint_parsed.scheme or "https"
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            kwargs["region"] = region
        return pafs.S3FileSystem(**kwargs), (parsed.netloc + parsed.path).rstrip("/")
    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as exc:
        raise UsageError(f"storage '{uri}' is not usable: {exc}; valid choices: a local/NFS path or s3://bucket/prefix") from None


def join(uri: str, *parts: str) -> str:
    uri = str(uri)
    if is_remote(uri):
        return uri.rstrip("/") + "/" + "/".join(p.strip("/") for p in parts)
    return str(Path(uri, *parts))


def canonical(uri: str) -> str:
    """Absolute local path or unchanged URI (what Tune's ``storage_path`` receives)."""
    return uri if is_remote(uri) else str(Path(uri).expanduser().resolve())


def exists(uri: str) -> bool:
    fs, path = resolve(uri)
    try:
        return fs.get_file_info(path).type != pafs.FileType.NotFound
    except OSError as exc:
        if "[errno 36]" in str(exc).lower() or getattr(exc, "errno", None) == errno.ENAMETOOLONG:
            return False  # a name too long for the filesystem names nothing there
        raise


def read_bytes(uri: str) -> bytes:
    fs, path = resolve(uri)
    with fs.open_input_stream(path) as fh:
        return fh.read()


def check_inside(root: str, uri: str) -> None:
    """Refuse a local write to ``uri`` that would leave ``root`` through a link (a symlinked
    ``tables/`` or ``report``, dangling or not): one clear error, nothing written.

    ``root`` itself may be a link the user named; what counts is where its own folders lead.
    Object stores have no links: remote URIs pass.
    """
    if is_remote(uri):
        return
    top_path = Path(root).expanduser().absolute()
    probe = Path(uri).expanduser().absolute()
    while probe != top_path and not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent  # the deepest part of the target that is already there
    if probe == top_path and not os.path.lexists(probe):
        return  # a new experiment: nothing inside it yet that could lead anywhere
    top, real = top_path.resolve(), probe.resolve()
    if real != top and top not in real.parents:
        raise UsageError(f"'{probe}' leads outside the experiment '{root}' (to '{real}'): a link inside an experiment "
                         f"is not followed for writing; remove it (nothing was written)")


def _is_under(root: str, uri: str) -> bool:
    if is_remote(root) or is_remote(uri):
        base = root.rstrip("/") + "/"
        return uri.startswith(base) and "/../" not in uri[len(base) - 1:]
    top = Path(root).expanduser().resolve()
    real = Path(uri).expanduser().resolve()  # links followed: a link out of the experiment is outside
    return real == top or top in real.parents


def confine_stored(root: str, uri: str, what: str, original_name: str, also: Tuple[str, ...] = ()) -> str:
    """The file a path *read from* experiment ``root`` (a table's ``weights_uri``, ``checkpoint_uri``)
    may be read at: inside ``root`` only (or under one of ``also``, e.g. this user's base-model cache).

    A moved or copied experiment still names its files at the old place: a stored path whose part
    after the experiment's original folder name (``original_name``) exists inside ``root`` is read
    there. Anything else is refused in one line (docs/security.md): a table cannot make a command
    read a file elsewhere on the machine.
    """
    if _is_under(root, uri) or any(_is_under(allowed, uri) for allowed in also if allowed):
        return uri
    marker = f"/{original_name}/"
    normalised = uri.replace(os.sep, "/")
    if original_name and marker in normalised:
        rebased = join(root, normalised.rsplit(marker, 1)[1])
        if _is_under(root, rebased) and exists(rebased):
            return rebased
    raise UsageError(f"{what} '{uri}' lies outside the experiment '{root}'; a path stored in an experiment is read "
                     f"only inside it (docs/security.md)")


def write_bytes(uri: str, data: bytes) -> None:
    """Atomic for readers: local temp + rename, or one remote object upload."""
    fs, path = resolve(uri)
    if isinstance(fs, pafs.LocalFileSystem):
        atomic_write_bytes(path, data)
        return
    fs.create_dir(posixpath.dirname(path), recursive=True)
    with fs.open_output_stream(path) as fh:
        fh.write(data)


def list_dir(uri: str) -> List[str]:
    fs, path = resolve(uri)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return []
    return sorted(info.base_name for info in fs.get_file_info(pafs.FileSelector(path)))



def download_dir(uri: str, local: str) -> None:
    """Copy ``uri`` into the local folder ``local`` (created whole: staged, then renamed)."""
    fs, path = resolve(uri)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=Path(local).parent))
    try:
        pafs.copy_files(path, str(staging), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        if Path(local).exists():
            shutil.rmtree(staging)
            return
        os.replace(staging, local)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_parquet(df, uri: str, metadata: dict) -> None:
    """Write a DataFrame (or a ``pyarrow.Table`` already typed) as Parquet with schema metadata,
    atomically for readers."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    merged = {**(table.schema.metadata or {}), **{k.encode(): str(v).encode() for k, v in metadata.items()}}
    table = table.replace_schema_metadata(merged)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    write_bytes(uri, buffer.getvalue())


def read_parquet(uri: str):
    """A Parquet file (local path or ``s3://``) as a ``pyarrow.Table``, schema metadata included.

    No reader threads: the tables are small, and a CLI that exits (say, with a usage error) while
    Arrow's pool threads wind down is killed by SIGABRT (apache/arrow#34314).
    """
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(read_bytes(uri)), use_threads=False)


def filesystem_type(path: str) -> str:
    """The mount type (``ext4``, ``nfs4``, ...) holding a local path, from /proc/mounts."""
    path = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) >= 3 and (path == fields[1] or path.startswith(fields[1].rstrip("/") + "/")):
                    if len(fields[1]) > len(best):
                        best, kind = fields[1], fields[2]
    except OSError:
        pass
    return kind


def is_shared(uri: str) -> bool:
    """True for remote URIs and local paths on a network filesystem (what a multi-host cluster needs)."""
    if is_remote(uri):
        return True
    existing = Path(uri).expanduser().resolve()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return filesystem_type(str(existing)) in NETWORK_FILESYSTEMS
