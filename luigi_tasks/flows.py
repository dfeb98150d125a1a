"""Flows: what a user runs (Prefect's flows and subflows)."""
from __future__ import annotations

import datetime as dt
import logging

import luigi

from luigi_tasks.download import DownloadMonth, probe
from luigi_tasks.load import LoadMonth
from luigi_tasks.tasks import DatasetParameter, MonthTask, StrictMonthParameter

logger = logging.getLogger("luigi-interface")


class IngestMonth(MonthTask, luigi.WrapperTask):
    """Download, convert and load one month: ``luigi --module luigi_tasks IngestMonth --month 2022-01``.

    With ``--refresh`` the source is asked (HEAD) whether the month changed since it
    was fetched; only then is it downloaded and loaded again, replacing the month.
    """

    refresh = luigi.BoolParameter(default=False, significant=False,
                                  description="re-ingest if the source published a new version")
    name_template = "Ingest {dataset} {month}"

    def complete(self) -> bool:
        return luigi.WrapperTask.complete(self)

    def requires(self) -> LoadMonth:
        if self.refresh and not self.source_version:
            if not hasattr(self, "_remote_version"):
                download = DownloadMonth(dataset=self.dataset, month=self.month)
                self._remote_version = probe(download.url)
                local = download.local_version()
                logger.info("%s: source version %s, local %s%s", self, self._remote_version, local or "none",
                            "" if local == self._remote_version else " -> re-ingesting")
            return LoadMonth(dataset=self.dataset, month=self.month, source_version=self._remote_version)
        return LoadMonth(**self.month_args())


class IngestRange(luigi.WrapperTask):
    """Every month from ``start`` up to and excluding ``stop`` (as luigi's RangeMonthly)."""

    dataset = DatasetParameter(default="yellow")
    start = StrictMonthParameter(description="first month, YYYY-MM")
    stop = StrictMonthParameter(description="month after the last one, YYYY-MM (exclusive)")
    refresh = luigi.BoolParameter(default=False, significant=False)

    def requires(self) -> list[IngestMonth]:
        months = []
        month = self.start
        while month < self.stop:
            months.append(IngestMonth(dataset=self.dataset, month=month, refresh=self.refresh))
            month = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        return months

    def __str__(self) -> str:
        return f"Ingest {self.dataset} {self.start:%Y-%m}..{self.stop:%Y-%m}"
