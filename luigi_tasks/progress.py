"""Progress of long task steps: luigid's visualizer (status message, percentage) and, on a terminal, tqdm.

No bar is drawn when stderr is not a terminal (cron, CI), so logs stay one line per event.
"""
from __future__ import annotations

import sys
import threading
import time

import luigi


class Progress:
    """Reports ``done`` of ``total`` units to a running luigi task, at most every ``interval`` s."""

    def __init__(self, task: luigi.Task, what: str, total: int | None, unit: str, interval: float = 1.0):
        self.task, self.what, self.unit, self.interval = task, what, unit, interval
        self._total = total
        self.done = 0
        self._last = 0.0
        self._bar = None
        self._lock = threading.Lock()
        if sys.stderr.isatty():
            from tqdm import tqdm
            scale = unit == "bytes"
            self._bar = tqdm(total=total, desc=what, unit="B" if scale else f" {unit}", unit_scale=scale,
                             unit_divisor=1024 if scale else 1000, leave=False, file=sys.stderr)

    @property
    def total(self) -> int | None:
        return self._total

    @total.setter
    def total(self, value: int | None) -> None:
        self._total = value
        if self._bar is not None:
            self._bar.total = value
            self._bar.refresh()

    def update(self, n: int) -> None:
        with self._lock:   # parallel COPY connections report from several threads
            self.done += n
            if self._bar is not None:
                self._bar.update(n)
            now = time.monotonic()
            if now - self._last < self.interval:
                return
            self._last = now
        self._report()

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._report()

    def _report(self) -> None:
        if self.total:
            pct = min(100, int(100 * self.done / self.total))
            self.task.set_progress_percentage(pct)
            self.task.set_status_message(f"{self.what}: {self.done:,} of {self.total:,} {self.unit} ({pct}%)")
        else:
            self.task.set_status_message(f"{self.what}: {self.done:,} {self.unit}")
