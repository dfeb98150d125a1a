"""Progress of long task steps, shown in luigid's visualizer (status message and percentage)."""
from __future__ import annotations

import time

import luigi


class Progress:
    """Reports ``done`` of ``total`` units to a running luigi task, at most every ``interval`` s."""

    def __init__(self, task: luigi.Task, what: str, total: int | None, unit: str, interval: float = 1.0):
        self.task, self.what, self.total, self.unit, self.interval = task, what, total, unit, interval
        self.done = 0
        self._last = 0.0

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._report()

    def finish(self) -> None:
        self._report()

    def _report(self) -> None:
        if self.total:
            pct = min(100, int(100 * self.done / self.total))
            self.task.set_progress_percentage(pct)
            self.task.set_status_message(f"{self.what}: {self.done:,} of {self.total:,} {self.unit} ({pct}%)")
        else:
            self.task.set_status_message(f"{self.what}: {self.done:,} {self.unit}")
