"""Progress of a range (IngestRange, RangeMonthly, cron): months done of those to load, rows, elapsed time
and an estimate of the time left.

Shown as a tqdm bar on a terminal, a log line per month otherwise, and, under luigid, as the status
message and percentage of the range's own task in the visualizer. luigi's worker tells the
scheduler about every task it schedules and finishes ("Informed scheduler that task ... has
status ..."); that line, logged by the process that runs the range whatever its ``--workers``,
is what is counted, and the rows come from the load report (``ingest_loads``), which every
load writes with its commit.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import sys
import time

from luigi_tasks.errors import IngestError

logger = logging.getLogger("luigi-interface")
_INFORMED = re.compile(r"Informed scheduler that task\s+(LoadMonth_\S+)\s+has status\s+(PENDING|DONE)")


def _clock(seconds: float) -> str:
    return str(dt.timedelta(seconds=int(seconds)))


class RangeProgress(logging.Handler):
    """Counts the loads of a range as luigi reports them; ``rows()`` reads what they loaded."""

    def __init__(self, what: str, rows, scheduler=None, task_id: str | None = None) -> None:
        super().__init__(logging.INFO)
        self.what, self.rows_loaded, self.scheduler, self.task_id = what, rows, scheduler, task_id
        self.pending: set[str] = set()
        self.done: set[str] = set()
        self.started = time.monotonic()
        self._bar = None

    def emit(self, record: logging.LogRecord) -> None:
        match = _INFORMED.search(record.getMessage())
        if not match:
            return
        task_id, status = match.groups()
        if status == "PENDING":
            self.pending.add(task_id)
        elif task_id in self.pending and task_id not in self.done:
            self.done.add(task_id)
            self.report()

    def report(self) -> str:
        done, total = len(self.done), max(len(self.pending), 1)
        elapsed = time.monotonic() - self.started
        left = elapsed / done * (total - done) if done else 0.0
        try:
            rows = self.rows_loaded()
        except IngestError as exc:   # the report cannot be read right now: progress without rows
            logger.debug("range progress: %s", exc)
            rows = None
        rows_text = f", {rows:,} rows" if rows is not None else ""
        message = (f"{self.what}: {done} of {total} months{rows_text}, {_clock(elapsed)} elapsed, "
                   f"about {_clock(left)} left")
        if sys.stderr.isatty():
            self._draw(done, total, rows)
        else:
            logger.info("progress: %s", message)
        if self.scheduler is not None and self.task_id:
            try:   # the range's own task in the visualizer
                self.scheduler.set_task_status_message(self.task_id, message)
                self.scheduler.set_task_progress_percentage(self.task_id, int(100 * done / total))
            except Exception as exc:   # luigid gone: the log line above still says it
                logger.warning("range progress not sent to luigid: %s", exc)
        return message

    def _draw(self, done: int, total: int, rows: int | None) -> None:
        """The tqdm bar: months done of total, rows loaded, elapsed and time left (tqdm's estimate)."""
        if self._bar is None:
            from tqdm import tqdm
            self._bar = tqdm(total=total, desc=self.what, unit=" months", file=sys.stderr, leave=True,
                             dynamic_ncols=True)
            # tqdm's clock starts at the bar, ours at the range: rate and time left count the whole range.
            self._bar.start_t = self._bar.last_print_t = time.time() - (time.monotonic() - self.started)
        self._bar.total = total
        self._bar.n = done
        if rows is not None:
            self._bar.set_postfix_str(f"{rows:,} rows", refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        super().close()
