"""Runs: every invocation is one run, as a Prefect flow run, with a state, an exit code and a record.

luigi has no run: one ``luigi`` invocation schedules and runs tasks, then exits with a
``[retcode]`` code computed from its worker's summary. Importing this package wraps
``luigi.interface._schedule_and_run`` (once), so every invocation that runs this package's
tasks (the ``luigi`` command, ``python -m luigi_tasks cron``) becomes a :class:`Run`:

========== ============================================================== ====================
state      when                                                           exit code
========== ============================================================== ====================
Completed  everything asked for is complete                               0
MissingData a month is not published (yet), nothing failed                 [retcode] missing_data
Failed     a task failed, could not be scheduled or was not let run       its [retcode] code
Cancelled  SIGTERM or SIGINT: the current task is rolled back             [runs] cancelled_code
Crashed    the process died without ending the run (found later)          -
========== ============================================================== ====================

When a run ends, luigi's own event mechanism carries it: :class:`RunEvent` events are
triggered on the run's root task with the :class:`~luigi_tasks.run_store.RunRecord`, so
``@luigi.Task.event_handler(RunEvent.FAILURE)`` receives every failed run (notifications and
``[hooks]`` are such handlers). luigi logs a handler that raises; the run's outcome never changes.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import shlex
import signal
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import luigi
import luigi.execution_summary
import luigi.interface
import luigi.retcodes
import luigi.rpc

from luigi_tasks.blocks import SqlAlchemyConnector
from luigi_tasks.config import runs as runs_config
from luigi_tasks.errors import IngestError
from luigi_tasks.load import LoadMonth, load_block_name
from luigi_tasks.load_report import loaded_rows, rows_loaded_since
from luigi_tasks.range_progress import RangeProgress
from luigi_tasks.run_store import RunRecord, RunStore
from luigi_tasks.secret import redact

logger = logging.getLogger("luigi-interface")

_SECRET_ARG = re.compile(r"(password|secret|token|apikey|api_key)", re.I)


class RunEvent:
    """luigi events triggered once at the end of every run, with its RunRecord."""

    SUCCESS = "luigi_tasks.run_success"          # Completed
    FAILURE = "luigi_tasks.run_failure"          # Failed, MissingData, Cancelled
    COMPLETION = "luigi_tasks.run_completion"    # every run, whatever its state


class Cancelled(KeyboardInterrupt):
    """SIGTERM or SIGINT: unwinds the running task (files removed, transaction rolled back) and the run.

    A KeyboardInterrupt, so that luigi's worker lets it through instead of recording a failure."""


def history(block: str | None = None) -> RunStore:
    """The run history on ``block``'s server (default: where the loads go)."""
    return RunStore(SqlAlchemyConnector.load(block or load_block_name()))


def last_run(block: str | None = None) -> RunRecord | None:
    """The newest run, after marking runs whose process died as Crashed."""
    store = history(block)
    store.mark_crashed(runs_config().heartbeat_seconds)
    records = store.list(limit=1)
    return records[0] if records else None


def _invocation() -> list[str]:
    """How this process was started, as typed: ``luigi --module ...``, ``python -m luigi_tasks cron ...``."""
    argv = list(getattr(sys, "orig_argv", sys.argv))
    return [os.path.basename(argv[0]), *argv[1:]] if argv else []


def safe_command(argv: list[str]) -> str:
    """The command line with secrets removed: known secret values, and the value of any option
    whose name says it is one (``--x-password VALUE``, ``--x-token=VALUE``)."""
    out, hide_next = [], False
    for arg in argv:
        if hide_next:
            out.append("**********")
            hide_next = False
            continue
        name, eq, _ = arg.partition("=")
        if name.startswith("--") and _SECRET_ARG.search(name):
            out.append(f"{name}=**********" if eq else arg)
            hide_next = not eq
        else:
            out.append(arg)
    return redact(shlex.join(out))


def describe_task(task: luigi.Task) -> str:
    """A human name for a root task: ours have one; luigi's RangeMonthly gets its window."""
    if task.task_family == "RangeMonthly":
        dataset = dict(task.of_params or {}).get("dataset", "yellow")
        stop = task.stop or dt.date.today()
        return f"RangeMonthly {task.of.task_family} {dataset} {task.start:%Y-%m}..{stop:%Y-%m} (stop exclusive)"
    return str(task)


def error_line(text: str | None) -> str | None:
    """The one-line error out of a failure explanation (ours start with it; luigi's are tracebacks)."""
    if not text:
        return None
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if lines and not lines[0].startswith(("Traceback", "Runtime error")):
        return redact(lines[0])
    for line in reversed(lines):   # a traceback ends with "module.ErrorType: message"
        match = re.match(r"^[\w.]+(?:Error|Exception|Exit|Interrupt)\w*: (.+)$", line)
        if match:
            return redact(match.group(1))
    return redact(lines[-1]) if lines else None


class Run:
    """One invocation: created when it starts, recorded while it runs, ended with a state."""

    def __init__(self, what: str, argv: list[str] | None = None) -> None:
        cfg = runs_config()
        self.record = RunRecord(run_id=uuid.uuid4().hex[:12], what=what,
                                command=safe_command(list(argv if argv is not None else _invocation())),
                                started_at=dt.datetime.now(dt.timezone.utc), log=os.environ.get("LUIGI_TASKS_LOG"))
        self.heartbeat_seconds = cfg.heartbeat_seconds
        self.store: RunStore | None = None
        if cfg.record:
            try:
                self.store = history()
            except IngestError as exc:   # the run itself will report the block's problem, once
                logger.warning("run %s: run history not recorded: %s", self.run_id, exc)
        self.results: list[dict[str, Any]] = []
        self.roots: list[luigi.Task] = []
        self._scheduling_errors = _SchedulingErrors()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    @property
    def run_id(self) -> str:
        return self.record.run_id

    # -- recording ------------------------------------------------------------
    def _store(self, what: str, call: Callable[[], Any]) -> Any:
        """A history write that must never change the run: a failure is a warning."""
        if self.store is None:
            return None
        try:
            return call()
        except IngestError as exc:
            logger.warning("run %s: run history not recorded (%s): %s", self.run_id, what, exc)
            return None

    def begin(self) -> None:
        crashed = self._store("crash check", lambda: self.store.mark_crashed(self.heartbeat_seconds)) or []
        for run_id in crashed:
            logger.warning("run %s was left Running by a process that no longer exists: marked Crashed", run_id)
        self._store("start", lambda: self.store.start(self.record))
        logger.info("run %s started: %s", self.run_id, self.record.what)
        if self.store is not None and self.heartbeat_seconds > 0:
            self._beat = threading.Thread(target=self._heartbeat, name="run-heartbeat", daemon=True)
            self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            self._store("heartbeat", lambda: self.store.heartbeat(self.run_id))

    # -- results of luigi's worker ----------------------------------------------
    def collect(self, worker: luigi.worker.Worker) -> int:
        """Add what one luigi scheduling pass did; return the exit code luigi will exit with."""
        sets = luigi.execution_summary._summary_dict(worker)
        root = luigi.execution_summary._root_task(worker)
        codes = luigi.retcodes.retcode()
        conditions = ((codes.missing_data, sets["still_pending_ext"]), (codes.task_failed, sets["failed"]),
                      (codes.already_running, sets["run_by_other_worker"]),
                      (codes.scheduling_error, sets["scheduling_error"]), (codes.not_run, sets["not_run"]))
        # As luigi.retcodes.run_with_retcodes decides it (the run history tests compare the recorded code
        # with the process's own).
        code = max(code if cond else 0 for code, cond in conditions)
        if code == 0 and root not in sets["completed"] and root not in sets["already_done"]:
            code = codes.not_run
        self.results.append({"sets": sets, "code": code, "scheduler": worker._scheduler})
        return code

    def _error(self, sets: dict, scheduler: Any) -> str | None:
        for task in sorted(sets["failed"], key=str):
            expl = _fetch_error(scheduler, task.task_id)
            return f"{task}: {error_line(expl) or 'failed'}"
        for task in sorted(sets["scheduling_error"], key=str):
            return f"{task}: {self._scheduling_errors.get(str(task)) or 'could not be scheduled'}"
        for task in sorted(sets["still_pending_ext"], key=str):
            return f"missing data: {task} is not published (yet)"
        if sets["not_run"]:
            return _not_run_reason(scheduler, sorted(sets["not_run"], key=str))
        for task in sorted(sets["run_by_other_worker"], key=str):
            return f"{task} is being run by another worker"
        return None

    # -- the end ---------------------------------------------------------------------
    def end(self, exit_code: int, state: str | None = None, error: str | None = None) -> RunRecord:
        """Finish the run: state, error line, months and rows, record, handlers."""
        self._stop.set()
        record = self.record
        codes = luigi.retcodes.retcode()
        record.exit_code = exit_code
        record.state = state or ("Completed" if exit_code == 0 else
                                 "MissingData" if exit_code == codes.missing_data else "Failed")
        loads = [t for result in self.results for t in result["sets"]["completed"] if isinstance(t, LoadMonth)]
        last = self.results[-1] if self.results else None   # a re-check pass supersedes the one before
        record.tasks = {category: len(tasks) for category, tasks in last["sets"].items() if tasks} if last else {}
        if error:
            record.error = redact(error)
        elif exit_code != 0 and last:
            record.error = self._error(last["sets"], last["scheduler"])
        record.months = sorted({f"{t.dataset} {t.ym}" for t in loads})
        record.rows = self._rows(loads)
        record.ended_at = dt.datetime.now(dt.timezone.utc)
        self._store("end", lambda: self.store.finish(record))
        # ERROR when something of ours failed; a month not published yet, or tasks left to another
        # worker, are worth a warning: nothing is wrong, the run is just not complete.
        failed = record.state in ("Cancelled", "Crashed") or exit_code in (codes.task_failed, codes.scheduling_error,
                                                                          codes.unhandled_exception)
        log = logger.info if record.state == "Completed" else logger.error if failed else logger.warning
        log("run %s %s: %s, exit code %s%s", self.run_id, record.state, record.what, exit_code,
            f" -- {record.error}" if record.error else "")
        root = self.roots[0] if self.roots else luigi.Task()
        for event in (RunEvent.SUCCESS if record.state == "Completed" else RunEvent.FAILURE, RunEvent.COMPLETION):
            root.trigger_event(event, record)   # luigi logs a handler that raises; nothing else changes
        return record

    def _rows(self, loads: list[LoadMonth]) -> int:
        if not loads or self.store is None:
            return 0
        return self._store("rows", lambda: loaded_rows(
            self.store.block, [(t.table_name, t.month) for t in loads])) or 0


class _SchedulingErrors(logging.Handler, dict):
    """What luigi's worker only logs: the error of a task whose complete() or requires() raised,
    by the task's name (luigi sends the scheduler no explanation for these)."""

    _PATTERN = re.compile(r"Will not run (.+?) or any dependencies due to error in \w+\(\) method:(.*)", re.S)

    def __init__(self) -> None:
        logging.Handler.__init__(self, logging.WARNING)
        dict.__init__(self)

    def emit(self, record: logging.LogRecord) -> None:
        match = self._PATTERN.match(record.getMessage())
        if match:
            self.setdefault(match.group(1), error_line(match.group(2).strip(" -\n")))

    __hash__ = logging.Handler.__hash__
    __eq__ = object.__eq__


def _fetch_error(scheduler: Any, task_id: str) -> str | None:
    try:
        expl = (scheduler.fetch_error(task_id) or {}).get("error")
    except Exception as exc:   # luigid gone at the end of the run: the error line is then unknown
        logger.warning("cannot fetch the error of %s from the scheduler: %s", task_id, exc)
        return None
    try:   # the worker sends the explanation JSON-encoded, and the scheduler keeps it so
        return json.loads(expl) if isinstance(expl, str) else expl
    except ValueError:
        return expl


def _not_run_reason(scheduler: Any, tasks: list[luigi.Task]) -> str:
    """Why the scheduler let tasks not run: one DISABLED after repeated failures (and how to re-enable
    it), or tasks another worker holds."""
    try:
        disabled = scheduler.task_list("DISABLED", "") or {}
    except Exception as exc:   # the local scheduler has the same API; a dead luigid says nothing
        logger.warning("cannot ask the scheduler why %s did not run: %s", tasks[0], exc)
        disabled = {}
    for task in tasks:
        if task.task_id in disabled:
            return (f"{task} was not allowed to run: luigid DISABLED it after repeated failures; re-enable it "
                    f"with `python -m luigi_tasks scheduler enable {task.task_id}` (or --all)")
    return (f"{tasks[0]} was not allowed to run: another worker was running it or what it needs; "
            "run again to see whether it completed")


# -- the current run, and how the luigi command gets one ---------------------------------------------
_current = threading.local()


def current() -> Run | None:
    return getattr(_current, "run", None)


def _raise_cancelled(signum: int, frame: Any) -> None:
    raise Cancelled(signal.Signals(signum).name)


@contextlib.contextmanager
def active(run: Run) -> Iterator[Run]:
    """Make ``run`` the current run for the block: recorded as started, SIGTERM/SIGINT cancel it.
    The caller ends it (``run.end(...)``) inside the block."""
    _current.run = run
    logging.getLogger("luigi-interface").addHandler(run._scheduling_errors)
    main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, _raise_cancelled) for sig in (signal.SIGTERM, signal.SIGINT)} if main else {}
    try:
        run.begin()
        yield run
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        logging.getLogger("luigi-interface").removeHandler(run._scheduling_errors)
        _current.run = None
        run._stop.set()


def cancelled_code() -> int:
    return runs_config().cancelled_code


_original_schedule_and_run = luigi.interface._schedule_and_run


def _range_progress(tasks, override_defaults) -> RangeProgress | None:
    """A progress reporter when the run is a range of months (IngestRange, RangeMonthly)."""
    root = tasks[0] if len(tasks) == 1 else None
    if root is None or root.task_family not in ("IngestRange", "RangeMonthly"):
        return None
    dataset = root.dataset if root.task_family == "IngestRange" else dict(root.of_params or {}).get("dataset", "yellow")
    load = LoadMonth(dataset=dataset, month=dt.date(2022, 1, 1))
    started = dt.datetime.now(dt.timezone.utc)
    env = luigi.interface.core(**(override_defaults or {}))
    scheduler = None
    if not env.local_scheduler:
        url = env.scheduler_url or f"http://{env.scheduler_host}:{env.scheduler_port:d}/"
        scheduler = luigi.rpc.RemoteScheduler(url)
    return RangeProgress(describe_task(root), lambda: rows_loaded_since(load.connector(), load.table_name, started),
                         scheduler, root.task_id)


@contextlib.contextmanager
def _reporting(tasks, override_defaults) -> Iterator[None]:
    progress = _range_progress(tasks, override_defaults)
    if progress is None:
        yield
        return
    logging.getLogger("luigi-interface").addHandler(progress)
    try:
        yield
    finally:
        logging.getLogger("luigi-interface").removeHandler(progress)
        progress.close()


def _schedule_and_run(tasks, worker_scheduler_factory=None, override_defaults=None):
    """luigi's scheduling and running of ``tasks``, as (part of) a run."""
    run = current()
    if run is not None:   # inside a run someone else started (the cron command): only collect
        run.roots = run.roots or list(tasks)
        with _reporting(tasks, override_defaults):
            result = _original_schedule_and_run(tasks, worker_scheduler_factory, override_defaults)
        run.collect(result.worker)
        return result
    what = ", ".join(describe_task(t) for t in tasks)
    # luigi configures its logging inside the call; the run's first lines need it already.
    luigi.interface.InterfaceLogging.setup(luigi.interface.core(**(override_defaults or {})))
    with active(Run(what)) as run:
        run.roots = list(tasks)
        try:
            with _reporting(tasks, override_defaults):
                result = _original_schedule_and_run(tasks, worker_scheduler_factory, override_defaults)
        except luigi.interface.PidLockAlreadyTakenExit:
            run.end(luigi.retcodes.retcode().already_running, "Failed", "already running: luigi's process lock "
                    "is held by an identical command")
            raise
        except Cancelled as exc:
            run.end(cancelled_code(), "Cancelled", f"cancelled by {exc}")
            sys.exit(cancelled_code())
        except Exception as exc:
            run.end(luigi.retcodes.retcode().unhandled_exception, "Failed",
                    f"{type(exc).__name__}: {exc}")
            raise
        run.end(run.collect(result.worker))
    return result


def install() -> None:
    """Make every luigi invocation in this process a run (idempotent)."""
    if luigi.interface._schedule_and_run is not _schedule_and_run:
        luigi.interface._schedule_and_run = _schedule_and_run
