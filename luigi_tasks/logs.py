"""Logging: expected failures (IngestError) as one line, everything else with its traceback;
secrets masked in every record; ``print()`` inside a task's ``run()`` routed to the log."""
from __future__ import annotations

import builtins
import contextlib
import logging
import re
import sys
import threading
from collections.abc import Iterator

from luigi_tasks.errors import ConfigError, IngestError
from luigi_tasks.secret import redact

# luigi logs an error in complete()/requires() as text: "...:\n<traceback>" ending in "module.Class: message".
_TEXT_TRACEBACK = re.compile(r"\s*\nTraceback \(most recent call last\):\n.*\n(luigi_tasks\.[\w.]+): ([^\n]*)\s*$",
                             re.S)
# luigi's worker starts each line with "[pid N] Worker Worker(salt=..., workers=1, host=..., username=..., pid=N)":
# the log format already carries the pid, so a line keeps only what happened to which task.
_WORKER_PREFIX = re.compile(r"^(\[pid \d+\] )?Worker Worker\([^)]*\) ")


class OneLineErrors(logging.Filter):
    """Fold an IngestError's message into the record and drop the traceback that would bury it
    (the chained cause stays on the exception, for DEBUG and luigid); mask secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ConfigError) and record.getMessage() == "Uncaught exception in luigi":
            record.msg = f"error: {exc}"   # a typo in an argument is not an exception: say what is wrong
            record.args = None
            record.exc_info = None
            record.exc_text = None
        elif isinstance(exc, IngestError):
            record.msg = f"{record.getMessage()} -- {exc}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        elif isinstance(record.msg, str) and "Traceback" in record.msg and not record.args:
            record.msg = _TEXT_TRACEBACK.sub(lambda m: f" -- {m.group(2)}", record.msg)
        if record.exc_info and not record.exc_text:   # a traceback shown in full: formatted here, masked
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        message = record.getMessage()
        tidy = redact(_WORKER_PREFIX.sub(lambda m: "" if m.group(1) else "worker ", message))
        if tidy != message:
            record.msg, record.args = tidy, None
        return True


def install() -> None:
    for name in ("luigi-interface", "luigi", "luigi.scheduler"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, OneLineErrors) for f in logger.filters):
            logger.addFilter(OneLineErrors())


# -- log_prints ---------------------------------------------------------------
# print() is swapped once for a dispatcher; which task (if any) a thread is running
# decides where its output goes, so several worker threads never see each other's prints.
_original_print = builtins.print
_current = threading.local()
_swap_lock = threading.Lock()
_active = 0


def _task_print(*args, sep=" ", end="\n", file=None, flush=False) -> None:
    task = getattr(_current, "task", None)
    if task is None or file not in (None, sys.stdout):
        _original_print(*args, sep=sep, end=end, file=file, flush=flush)
        return
    text = (sep if sep is not None else " ").join(str(a) for a in args)
    for line in text.splitlines() or [""]:
        logging.getLogger("luigi-interface").info("[%s] %s", task.task_id, line)


@contextlib.contextmanager
def prints_to_log(task, enabled: bool = True) -> Iterator[None]:
    """Within the block, ``print()`` in this thread logs to luigi-interface with ``task``'s id."""
    global _active
    if not enabled:
        yield
        return
    with _swap_lock:
        if _active == 0:
            builtins.print = _task_print
        _active += 1
    _current.task = task
    try:
        yield
    finally:
        _current.task = None
        with _swap_lock:
            _active -= 1
            if _active == 0:
                builtins.print = _original_print
