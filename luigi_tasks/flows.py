"""Flows: what a user runs (Prefect's flows and subflows)."""
from __future__ import annotations

import logging

import luigi

from luigi_tasks.base import Flow, MonthParameters
from luigi_tasks.download import DownloadMonth
from luigi_tasks.load import LoadMonth
from luigi_tasks.months import month_range
from luigi_tasks.params import DatasetParameter, StrictMonthParameter
from luigi_tasks.sources import probe

logger = logging.getLogger("luigi-interface")


class IngestMonth(MonthParameters, Flow):
    """Download, convert and load one month: ``luigi --module luigi_tasks IngestMonth --month 2022-01``.

    With ``--refresh`` the source is asked (HEAD) whether the month changed since it
    was fetched; only then is it downloaded and loaded again, replacing the month.
    """

    refresh = luigi.BoolParameter(default=False, significant=False,
                                  description="re-ingest if the source published a new version")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.validate_month()

    def __str__(self) -> str:
        return f"Ingest {self.dataset} {self.ym}"

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


class IngestRange(Flow):
    """Every month from ``start`` up to and excluding ``stop`` (as luigi's RangeMonthly)."""

    dataset = DatasetParameter(default="yellow")
    start = StrictMonthParameter(description="first month, YYYY-MM")
    stop = StrictMonthParameter(description="month after the last one, YYYY-MM (exclusive)")
    refresh = luigi.BoolParameter(default=False, significant=False)

    def requires(self) -> list[IngestMonth]:
        return [IngestMonth(dataset=self.dataset, month=month, refresh=self.refresh)
                for month in month_range(self.start, self.stop)]

    def __str__(self) -> str:
        return f"Ingest {self.dataset} {self.start:%Y-%m}..{self.stop:%Y-%m}"
