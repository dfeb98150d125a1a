"""Timeouts that stop blocking work for real (Prefect's ``timeout_seconds``, which does not stop sync code).

``deadline(seconds, what)`` arms a real-time timer around a block: when it expires, the
block is interrupted with :class:`TaskTimeoutError` wherever it is (a socket read, a sleep, a
wait on a thread), and its own ``finally``/``with`` clauses remove partial files and roll
back transactions. A C call that never returns to Python (a COPY the server is stuck on)
cannot be interrupted by a signal, which is why every PostgreSQL session of a task also
gets ``statement_timeout``/``lock_timeout`` (``luigi_tasks.pg``) and every download a stall
timeout. Signals reach only the main thread: luigi runs a task in the main thread of its
worker process (or of a forked process per task with ``--workers N``), so that is where
the timer is armed; anywhere else the block runs without one, and says so in the log.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator

from luigi_tasks.errors import TransientError

logger = logging.getLogger("luigi-interface")


class TaskTimeoutError(TransientError):
    """The block ran past its deadline (retried like any transient failure)."""


class Deadline:
    """When a block must end; ``left()`` tells the time remaining (None: no deadline)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.ends = time.monotonic() + seconds if seconds else None

    def left(self) -> float | None:
        return None if self.ends is None else max(0.0, self.ends - time.monotonic())


@contextlib.contextmanager
def deadline(seconds: float | None, what: str) -> Iterator[Deadline]:
    """Interrupt the block with ``TaskTimeoutError("<what> timed out after N s")`` after ``seconds``."""
    limit = Deadline(seconds)
    if not seconds:
        yield limit
        return
    if threading.current_thread() is not threading.main_thread():
        logger.warning("%s: no timeout enforced outside the main thread", what)
        yield limit
        return

    def expire(signum, frame):
        raise TaskTimeoutError(f"{what} timed out after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield limit
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
