"""File targets that are either complete or absent, and the source sidecar beside each one."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import luigi

from luigi_tasks.errors import IngestError, PermanentError, TransientError

# Errors that mean "this file cannot be written here", not a bug: say so in one line.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS,
                 errno.ENOTDIR}


def write_error(exc: OSError, path: Path) -> IngestError | None:
    """A one-line error for a failed write (disk full, file size limit, read-only, not writable)."""
    if exc.errno in _WRITE_ERRNOS:
        hint = " (disk full or a file size limit)" if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) else ""
        return PermanentError(f"cannot write {path}: {exc.strerror}{hint}")
    return None


def human_size(n: float) -> str:
    """Bytes for a person: 1,234 bytes, 38.1 MB, 1.7 GB (decimal units, as disks are sold)."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} TB"


def check_space(directory: Path, need: int, what: str, reserve: int = 0) -> None:
    """Fail at once, in one line, when ``directory`` lacks ``need`` bytes (plus ``reserve`` left free),
    rather than fill the disk and fail half-way."""
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free - need < reserve:
        kept = f" and {human_size(reserve)} kept free ([pipeline] disk_reserve)" if reserve else ""
        raise PermanentError(f"not enough disk space in {directory} for {what}: it needs about {human_size(need)}"
                             f"{kept}; {human_size(free)} free")


def pid_alive(pid: int) -> bool:
    """Whether a process of this host has ``pid`` (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# A temporary file of another host (a shared data directory) is removed only when no one has written
# it for this long: its writer's pid means nothing here.
FOREIGN_TMP_STALE_SECONDS = 24 * 3600
HOST = socket.gethostname().replace("-", "_") or "localhost"


def _reap(directory: Path, prefix: str) -> None:
    """Remove temporary files whose writer is dead: this host's by pid, another host's by age."""
    now = time.time()
    for stale in directory.glob(prefix + "*"):
        host, _, pid = stale.name[len(prefix):].rpartition("-")
        if not pid.isdigit():
            continue
        try:
            if host in ("", HOST):   # "" : written before temporary names carried the host
                dead = not pid_alive(int(pid))
            else:
                dead = now - stale.stat().st_mtime > FOREIGN_TMP_STALE_SECONDS
        except FileNotFoundError:
            continue   # its writer finished (or reaped it) meanwhile
        if dead:
            stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_file(dest: str | os.PathLike, sidecar_info: dict | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` only if the block succeeds.

    The temporary name starts with a dot and carries the writer's host and pid, so a killed
    writer's leftover never looks like a finished file and the next writer on that host removes
    it (on a shared directory, another host's file only when it is a day old).

    With ``sidecar_info`` (a dict the block may fill), ``<dest>.source.json`` is written after
    the rename, describing the file it belongs to: the sidecar is the commit point, and a file
    whose sidecar does not describe it (a kill between the two) counts as missing.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise (write_error(exc, dest.parent) or exc) from exc
    prefix = f".{dest.name}.tmp-"
    _reap(dest.parent, prefix)
    tmp = dest.parent / f"{prefix}{HOST}-{os.getpid()}"
    try:
        yield tmp
        os.replace(tmp, dest)
        if sidecar_info is not None:
            write_sidecar(dest, {**sidecar_info, "file": file_identity(dest)})
    except FileNotFoundError as exc:
        raise TransientError(f"cannot move {tmp.name} into place as {dest}: the temporary file is gone "
                             "(removed by another process sharing the directory?)") from exc
    except OSError as exc:
        error = write_error(exc, dest)
        if error is None:
            raise
        raise error from exc
    finally:
        tmp.unlink(missing_ok=True)


def file_identity(path: Path) -> dict:
    """What tells this file from another under the same name, cheaply: its size and a hash of its first
    and last 64 KiB (a Parquet footer, the end of a CSV). Not its mtime: copying or touching the data
    directory must not make every file look foreign."""
    size = path.stat().st_size
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        digest.update(fh.read(65536))
        fh.seek(max(0, size - 65536))
        digest.update(fh.read(65536))
    return {"size": size, "edges_sha1": digest.hexdigest()}


# -- sidecars ---------------------------------------------------------------
# ``<file>.source.json`` beside a raw or CSV file records which version of the source it
# was made from (and, for a CSV, its row count and batch offsets), and the file it describes.

def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".source.json")


def read_sidecar(path: Path) -> dict:
    """The sidecar of ``path`` if it describes the file there now; empty otherwise (no sidecar, an
    unreadable one, or one left from another version of the file)."""
    try:
        info = json.loads(sidecar(path).read_text())
        if "file" in info and info["file"] != file_identity(path):   # sidecars of before 0.2 carry no "file"
            return {}
        return info
    except (OSError, ValueError, TypeError):
        return {}


def write_sidecar(path: Path, info: dict) -> None:
    with atomic_file(sidecar(path)) as tmp:
        tmp.write_text(json.dumps(info, indent=1, sort_keys=True))


class SidecarTarget(luigi.LocalTarget):
    """A file target that exists only with a sidecar describing it (see ``atomic_file``)."""

    def exists(self) -> bool:
        return super().exists() and bool(read_sidecar(Path(self.path)))
