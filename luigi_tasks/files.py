"""File targets that are either complete or absent."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


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
    dest.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{dest.name}.tmp-"
    for stale in dest.parent.glob(prefix + "*"):
        pid = stale.name[len(prefix):]
        if pid.isdigit() and not _pid_alive(int(pid)):
            stale.unlink(missing_ok=True)
    tmp = dest.parent / f"{prefix}{os.getpid()}"
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
