"""File targets that are either complete or absent, and the source sidecar beside each one."""
from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path

from luigi_tasks.errors import IngestError, PermanentError

# Errors that mean "this file cannot be written here", not a bug: say so in one line.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS,
                 errno.ENOTDIR}


def write_error(exc: OSError, path: Path) -> IngestError | None:
    """A one-line error for a failed write (disk full, file size limit, read-only, not writable)."""
    if exc.errno in _WRITE_ERRNOS:
        hint = " (disk full or a file size limit)" if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) else ""
        return PermanentError(f"cannot write {path}: {exc.strerror}{hint}")
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def atomic_file(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` only if the block succeeds.

    The temporary name starts with a dot and carries the writer's pid, so a killed
    writer's leftover never looks like a finished file and the next writer removes it.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise (write_error(exc, dest.parent) or exc) from exc
    prefix = f".{dest.name}.tmp-"
    for stale in dest.parent.glob(prefix + "*"):
        pid = stale.name[len(prefix):]
        if pid.isdigit() and not _pid_alive(int(pid)):
            stale.unlink(missing_ok=True)
    tmp = dest.parent / f"{prefix}{os.getpid()}"
    try:
        yield tmp
        os.replace(tmp, dest)
    except OSError as exc:
        error = write_error(exc, dest)
        if error is None:
            raise
        raise error from exc
    finally:
        tmp.unlink(missing_ok=True)


# -- sidecars ---------------------------------------------------------------
# ``<file>.source.json`` beside a raw or CSV file records which version of the source it
# was made from (and, for a CSV, its row count and batch offsets).

def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".source.json")


def read_sidecar(path: Path) -> dict:
    """The sidecar of ``path``; empty if there is none or it cannot be read."""
    try:
        return json.loads(sidecar(path).read_text())
    except (OSError, ValueError):
        return {}


def write_sidecar(path: Path, info: dict) -> None:
    with atomic_file(sidecar(path)) as tmp:
        tmp.write_text(json.dumps(info, indent=1, sort_keys=True))
