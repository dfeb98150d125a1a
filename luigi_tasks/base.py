"""The base of every task in the package, and of every month task.

``PipelineTask`` gives each task, from one place, what a Prefect user expects of
``@task``: ``retries`` with ``retry_delays``, ``retry_backoff`` and ``retry_jitter``
(inside ``run()``, so a retry is logged and waited for where it happens, and a
permanent error is not retried at all: ``luigi_tasks.retry``), ``log_prints``
(``print()`` in ``run()`` goes to the log), a human ``name`` in logs and the
visualizer, and ``cache_expiration``. Every per-task setting can be given per family
(``[DownloadMonth] retries``) or for all tasks (``[pipeline] retry_delays``).

Caching is luigi's own: a task is done when its output exists. On top of that, as
Prefect's ``cache_expiration``, an output older than the family's ``cache_expiration``
counts as missing, and a task whose upstream output is stale (expired, or built from
another source version) is stale too, so a refresh flows downstream. A deleted
intermediate file does not: once a month is loaded, its raw and CSV files may be
removed without causing a reload.

Overridable hooks:

- ``name_template`` and ``name_fields()``: the task's human name;
- ``output_age()``: how old the output is (file mtime, or a marker's ``inserted``);
- ``own_complete()``: whether this task's own output is usable, ignoring upstream.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any, ClassVar

import luigi
from luigi.parameter import ParameterVisibility
from luigi.task import flatten

from luigi_tasks.config import data_path, parse_duration, pipeline
from luigi_tasks.errors import ConfigError, IngestError, first_line
from luigi_tasks.logs import prints_to_log
from luigi_tasks.params import (
    DatasetParameter,
    SharedFloatParameter,
    SharedIntParameter,
    SharedParameter,
    StrictMonthParameter,
)
from luigi_tasks.retry import RetryPolicy, parse_delays
from luigi_tasks.schema import DATASETS, FIRST_MONTH
from luigi_tasks.secret import redact
from luigi_tasks.timeouts import deadline

logger = logging.getLogger("luigi-interface")
# When this process started working (luigi imports the package just before it schedules): an output
# made since is never expired, or "cache_expiration = 0 seconds" could never be complete.
_STARTED = time.monotonic()


def describe_error(exc: BaseException) -> str:
    """One line for a person: an expected error's message, else the exception's type and first line."""
    text = str(exc) if isinstance(exc, IngestError) else f"{type(exc).__name__}: {first_line(exc)}"
    return redact(text)


def made_by_this_process(age: dt.timedelta) -> bool:
    """Whether an output of this ``age`` was made since this process started."""
    return age.total_seconds() <= time.monotonic() - _STARTED


class PipelineTask(luigi.Task):
    """A task with Prefect's per-task options (see the module docstring)."""

    retries = SharedIntParameter(default=0, significant=False,
                                 description="attempts after the first one fails (transient errors only)")
    retry_delays = SharedParameter(default="10", significant=False,
                                   description="seconds before each retry, e.g. '10' or '10, 60, 300'")
    retry_backoff = SharedParameter(default="", significant=False,
                                    description="'exponential': the first delay doubles with every retry")
    retry_jitter = SharedFloatParameter(default=0.0, significant=False,
                                        description="spread each delay by up to this fraction, e.g. 0.2")
    cache_expiration = SharedParameter(
        default="", significant=False, description="outputs older than this count as missing, e.g. '7 days'")
    timeout = SharedParameter(default="2 hours", significant=False,
                              description="an attempt running longer is stopped and fails as 'timed out' "
                                          "(retried like any transient failure); 'never' for none")

    # Prefect's task name=: how the task appears in logs and status messages.
    name_template: ClassVar[str] = "{family}"

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if "run" in cls.__dict__:   # each class's own run(): print() to the log, retried per the policy
            run = cls.__dict__["run"]

            def managed_run(self, _run=run):
                with prints_to_log(self, enabled=pipeline().log_prints):
                    return self.run_with_retries(lambda: self._attempt(_run))

            managed_run.__doc__ = run.__doc__
            cls.run = managed_run

    def _attempt(self, run: Any) -> Any:
        """One attempt of ``run()``, stopped at the family's timeout."""
        limit = parse_duration(self.timeout, "timeout")
        with deadline(limit.total_seconds() if limit else None, str(self)) as self.deadline:
            return run(self)

    def time_left(self) -> float | None:
        """Seconds left for the running attempt (None: no timeout): for waits the timer cannot stop."""
        current = getattr(self, "deadline", None)
        return current.left() if current else None

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.retries, parse_delays(self.retry_delays), self.retry_backoff.strip().lower(),
                           self.retry_jitter)

    def run_with_retries(self, attempt: Any) -> Any:
        """Call ``attempt()`` until it succeeds, a permanent error occurs, or the retries are used up;
        each retry is logged (and shown in the visualizer) before its wait."""
        policy = self.retry_policy()
        number = 1
        while True:
            try:
                return attempt()
            except Exception as exc:
                if not policy.should_retry(exc, number):
                    raise
                delay = policy.delay(number)
                number += 1
                message = f"attempt {number} of {policy.attempts} in {delay:g} s: {describe_error(exc)}"
                logger.warning("retrying %s: %s", self, message)
                if self.set_status_message:   # set by luigi's worker while run() runs
                    self.set_status_message(f"{self}: retrying, {message}")
                time.sleep(delay)

    def name_fields(self) -> dict[str, Any]:
        return {"family": self.task_family}

    def __str__(self) -> str:
        return self.name_template.format(**self.name_fields())

    def on_failure(self, exception: BaseException) -> str:
        """The explanation luigid shows and records (and the run's error line): the one-line error first,
        then luigi's traceback with its chained causes, scrubbed of every secret this process has loaded."""
        return redact(f"{describe_error(exception)}\n\n{super().on_failure(exception)}")

    # -- caching ------------------------------------------------------------
    def output_exists(self) -> bool:
        return all(t.exists() for t in flatten(self.output()))

    def output_age(self) -> dt.timedelta | None:
        """How long ago the output was made (for expiry); None if unknown."""
        target = self.output()
        if hasattr(target, "age"):   # a marker row knows when it was written
            return target.age()
        if isinstance(target, luigi.LocalTarget) and Path(target.path).exists():
            return dt.datetime.now() - dt.datetime.fromtimestamp(Path(target.path).stat().st_mtime)
        return None

    def expiry_limit(self) -> dt.timedelta | None:
        """The age from which an output counts as missing (None: never)."""
        return parse_duration(self.cache_expiration)

    def expired(self, age: dt.timedelta | None = None) -> bool:
        """Whether the output (of ``age``, default: measured) is older than ``expiry_limit()``."""
        limit = self.expiry_limit()
        if limit is None:
            return False
        if age is None:
            age = self.output_age()
        return age is not None and not made_by_this_process(age) and age >= limit

    def own_complete(self) -> bool:
        return self.output_exists() and not self.expired()

    def stale(self) -> bool:
        """The output exists but must be rebuilt, so everything built from it must be too."""
        return self.output_exists() and not self.complete()

    def complete(self) -> bool:
        return self.own_complete() and not any(dep.stale() for dep in flatten(self.requires())
                                               if isinstance(dep, PipelineTask))


class Fetching:
    """What a task that downloads shares: how long a silent source is waited for."""

    stall_timeout = SharedParameter(default="60 seconds", significant=False,
                                    description="a source that sends nothing for this long fails (transient)")

    def stall_seconds(self) -> float:
        return parse_duration(self.stall_timeout, "stall_timeout").total_seconds()


class MonthParameters:
    """What identifies a month of a dataset: shared by the month tasks and the flows above them."""

    dataset = DatasetParameter(default="yellow", description="TLC dataset: " + ", ".join(DATASETS))
    month = StrictMonthParameter(description="month to ingest, YYYY-MM")
    source_version = luigi.Parameter(
        default="", description="source version the output must come from (IngestMonth --refresh sets it); "
                                "empty: whatever was fetched")
    forced_since = luigi.Parameter(
        default="", description="outputs made before this UTC time count as missing (IngestMonth --force sets "
                                "it to the run's start): Prefect's refresh_cache")

    def validate_month(self) -> None:
        first = FIRST_MONTH[self.dataset]
        if self.ym < first:
            raise ConfigError(f"{self.dataset} {self.ym}: the TLC publishes {self.dataset} trips from {first} on")
        if self.month > dt.date.today():
            raise ConfigError(f"{self.dataset} {self.ym}: that month has not happened yet")

    @property
    def ym(self) -> str:
        return self.month.strftime("%Y-%m")

    def month_args(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "month": self.month, "source_version": self.source_version,
                "forced_since": self.forced_since}


class MonthTask(MonthParameters, PipelineTask):
    """A task about one month of one TLC dataset."""

    name_template = "{family} {dataset} {month}"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.validate_month()

    def name_fields(self) -> dict[str, Any]:
        return {**super().name_fields(), "dataset": self.dataset, "month": self.ym}

    def expiry_limit(self) -> dt.timedelta | None:
        # Forced: anything made before the forcing run started is too old. An age, not a time, so that a
        # marker's age measured by the database clock compares with it whatever the clocks' offset.
        limit = super().expiry_limit()
        if self.forced_since:
            since = dt.datetime.now(dt.timezone.utc) - dt.datetime.fromisoformat(self.forced_since)
            limit = since if limit is None else min(limit, since)
        return limit

    def raw_path(self) -> Path:
        return data_path("raw", self.dataset, f"{self.dataset}_tripdata_{self.ym}.parquet")

    def csv_path(self) -> Path:
        return data_path("csv", self.dataset, f"{self.dataset}_tripdata_{self.ym}.csv")


# Options that belong to each task, not to a flow: on a flow they are refused with a pointer to the
# per-task form, never accepted and ignored.
TASK_OPTIONS = ("retries", "retry_delays", "retry_backoff", "retry_jitter", "cache_expiration")


class Flow(luigi.WrapperTask):
    """The base of the flows (what a user runs). Its parameters say what to ingest; per-task options
    (``--retries``, ``--cache-expiration``, ...) are refused here with the per-task form to use."""

    retries = luigi.OptionalParameter(default=None, significant=False, visibility=ParameterVisibility.PRIVATE)
    retry_delays = luigi.OptionalParameter(default=None, significant=False, visibility=ParameterVisibility.PRIVATE)
    retry_backoff = luigi.OptionalParameter(default=None, significant=False, visibility=ParameterVisibility.PRIVATE)
    retry_jitter = luigi.OptionalParameter(default=None, significant=False, visibility=ParameterVisibility.PRIVATE)
    cache_expiration = luigi.OptionalParameter(default=None, significant=False,
                                               visibility=ParameterVisibility.PRIVATE)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        given = [name for name in TASK_OPTIONS if getattr(self, name) is not None]
        if given:
            flag = given[0].replace("_", "-")
            raise ConfigError(f"{self.task_family} does not take --{flag}: it is set per task, e.g. "
                              f"--DownloadMonth-{flag} or --LoadMonth-{flag} (or [DownloadMonth] {given[0]} "
                              "in luigi.cfg; [pipeline] for every task)")
