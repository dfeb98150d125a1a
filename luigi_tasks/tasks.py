"""What every month task shares: parameters, human names, retries, caching with expiry, log_prints.

Caching is luigi's own: a task is done when its output exists.  On top of that,
as Prefect's ``cache_expiration``, an output older than the family's
``cache_expiration`` counts as missing, and a task whose upstream output is stale
(expired, or built from another source version) is stale too, so a refresh flows
downstream.  A deleted intermediate file does not: once a month is loaded, its raw
and CSV files may be removed without causing a reload.
"""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import luigi
from luigi.task import flatten

from luigi_tasks.config import data_path, pipeline
from luigi_tasks.errors import IngestError
from luigi_tasks.logs import prints_to_log
from luigi_tasks.schema import DATASETS, FIRST_MONTH

_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600,
          "d": 86400, "day": 86400, "w": 604800, "week": 604800}


def parse_duration(text: str) -> dt.timedelta | None:
    """``"7 days"``, ``"12h"``, ``"1 week 2 days"``; empty or ``never``: None (no expiry)."""
    text = (text or "").strip().lower()
    if text in ("", "never", "none"):
        return None
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+?)s?\b", text)
    if not parts or re.sub(r"[\d.\sa-z]", "", text) or any(unit not in _UNITS for _, unit in parts):
        raise IngestError(f"invalid cache_expiration {text!r}: use e.g. '7 days', '12 hours', '30 minutes'")
    return dt.timedelta(seconds=sum(float(n) * _UNITS[unit] for n, unit in parts))


class StrictMonthParameter(luigi.MonthParameter):
    """``YYYY-MM`` only, with an error that says so."""

    def parse(self, s: str) -> dt.date:
        if not re.fullmatch(r"\d{4}-\d{2}", s or "") or not 1 <= int(s[5:]) <= 12:
            raise IngestError(f"invalid month {s!r}: expected YYYY-MM, e.g. 2022-01")
        return super().parse(s)


class DatasetParameter(luigi.ChoiceParameter):
    """One of the TLC datasets, with an error that lists them."""

    def __init__(self, **kwargs) -> None:
        super().__init__(choices=DATASETS, var_type=str, **kwargs)

    def normalize(self, var: str) -> str:
        if var not in DATASETS:
            raise IngestError(f"unknown dataset {var!r}: choose one of {', '.join(DATASETS)}")
        return var


class MonthTask(luigi.Task):
    dataset = DatasetParameter(default="yellow", description="TLC dataset: " + ", ".join(DATASETS))
    month = StrictMonthParameter(description="month to ingest, YYYY-MM")
    source_version = luigi.Parameter(
        default="", description="source version the output must come from (IngestMonth --refresh sets it); "
                                "empty: whatever was fetched")
    cache_expiration = luigi.Parameter(
        default="", significant=False, description="outputs older than this count as missing, e.g. '7 days'")
    retries = luigi.IntParameter(default=0, significant=False, description="retries after a failure, as Prefect's")

    # Prefect's task name=: how the task appears in logs and status messages.
    name_template = "{family} {dataset} {month}"

    def __init_subclass__(cls, **kw) -> None:
        super().__init_subclass__(**kw)
        if "run" in cls.__dict__:   # wrap each class's own run() so print() goes to the log
            run = cls.__dict__["run"]

            def logged_run(self, _run=run):
                with prints_to_log(self, enabled=pipeline().log_prints):
                    return _run(self)

            logged_run.__doc__ = run.__doc__
            cls.run = logged_run

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        first = FIRST_MONTH[self.dataset]
        if self.ym < first:
            raise IngestError(f"{self.dataset} {self.ym}: the TLC publishes {self.dataset} trips from {first} on")
        if self.month > dt.date.today():
            raise IngestError(f"{self.dataset} {self.ym}: that month has not happened yet")

    @property
    def ym(self) -> str:
        return self.month.strftime("%Y-%m")

    def __str__(self) -> str:
        return self.name_template.format(family=self.task_family, dataset=self.dataset, month=self.ym)

    @property
    def retry_count(self) -> int:
        # luigi counts failures allowed before DISABLED; Prefect counts retries after the first.
        return self.retries + 1

    def month_args(self) -> dict:
        return {"dataset": self.dataset, "month": self.month, "source_version": self.source_version}

    def raw_path(self) -> Path:
        return data_path("raw", self.dataset, f"{self.dataset}_tripdata_{self.ym}.parquet")

    def csv_path(self) -> Path:
        return data_path("csv", self.dataset, f"{self.dataset}_tripdata_{self.ym}.csv")

    # -- caching ------------------------------------------------------------
    def output_exists(self) -> bool:
        return all(t.exists() for t in flatten(self.output()))

    def output_age(self) -> dt.timedelta | None:
        """How long ago the output was made (for expiry); None if unknown."""
        target = self.output()
        if isinstance(target, luigi.LocalTarget) and Path(target.path).exists():
            return dt.datetime.now() - dt.datetime.fromtimestamp(Path(target.path).stat().st_mtime)
        return None

    def expired(self, age: dt.timedelta | None = None) -> bool:
        """Whether the output (of ``age``, default: measured) is older than ``cache_expiration``."""
        limit = parse_duration(self.cache_expiration)
        if limit and age is None:
            age = self.output_age()
        return limit is not None and age is not None and age > limit

    def own_complete(self) -> bool:
        return self.output_exists() and not self.expired()

    def stale(self) -> bool:
        """The output exists but must be rebuilt, so everything built from it must be too."""
        return self.output_exists() and not self.complete()

    def complete(self) -> bool:
        return self.own_complete() and not any(dep.stale() for dep in flatten(self.requires())
                                               if isinstance(dep, MonthTask))
