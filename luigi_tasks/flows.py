"""Flows: what a user runs (Prefect's flows and subflows)."""
from __future__ import annotations

import datetime as dt
import logging

import luigi

from luigi_tasks.base import Flow, MonthParameters
from luigi_tasks.download import DownloadMonth
from luigi_tasks.load import LoadMonth
from luigi_tasks.months import month_range
from luigi_tasks.params import DatasetParameter, StrictMonthParameter
from luigi_tasks.sources import probe

logger = logging.getLogger("luigi-interface")


def forced_now() -> str:
    """The instant a forced run starts: outputs made before it are rebuilt."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


class IngestMonth(MonthParameters, Flow):
    """Download, convert and load one month: ``luigi --module luigi_tasks IngestMonth --month 2022-01``.

    With ``--refresh`` the source is asked (HEAD) whether the month changed since it
    was fetched; only then is it downloaded and loaded again, replacing the month. With
    ``--force`` it is downloaded, converted and loaded again whatever happened before
    (Prefect's ``refresh_cache=True``), replacing the month in one transaction.
    """

    refresh = luigi.BoolParameter(default=False, significant=False,
                                  description="re-ingest if the source published a new version")
    force = luigi.BoolParameter(default=False, significant=False,
                                description="rebuild the month from a fresh download even if nothing changed")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.validate_month()
        LoadMonth(**self.month_args())   # its settings (--LoadMonth-table ...) are checked with the arguments

    def __str__(self) -> str:
        return f"Ingest {self.dataset} {self.ym}"

    def requires(self) -> LoadMonth:
        args = {**self.month_args(), "source_version": self._refreshed_version()}
        if self.force and not self.forced_since:
            if not hasattr(self, "_forced_since"):   # one instant per run: the task ids stay the same
                self._forced_since = forced_now()
                logger.info("%s: --force: rebuilding from a fresh download", self)
            args["forced_since"] = self._forced_since
        return LoadMonth(**args)

    def _refreshed_version(self) -> str:
        """The version to ingest: with --refresh, the source's current one (asked once, with the download's
        retry policy; a month the source does not have is left to PublishedMonth: missing data)."""
        if self.refresh and not self.source_version:
            if not hasattr(self, "_remote_version"):
                download = DownloadMonth(dataset=self.dataset, month=self.month)
                self._remote_version = download.run_with_retries(lambda: probe(download.url)) or ""
                local = download.local_version()
                if not self._remote_version:
                    logger.warning("%s: not published at %s: nothing to refresh", self, download.url)
                else:
                    logger.info("%s: source version %s, local %s%s", self, self._remote_version, local or "none",
                                "" if local == self._remote_version else " -> re-ingesting")
            return self._remote_version
        return self.source_version


class IngestRange(Flow):
    """Every month from ``start`` up to and excluding ``stop`` (as luigi's RangeMonthly)."""

    dataset = DatasetParameter(default="yellow")
    start = StrictMonthParameter(description="first month, YYYY-MM")
    stop = StrictMonthParameter(description="month after the last one, YYYY-MM (exclusive)")
    refresh = luigi.BoolParameter(default=False, significant=False,
                                  description="re-ingest the months the source re-published")
    force = luigi.BoolParameter(default=False, significant=False,
                                description="rebuild every month of the range from a fresh download")

    def requires(self) -> list[IngestMonth]:
        if self.force and not hasattr(self, "_forced_since"):
            self._forced_since = forced_now()
        forced = {"forced_since": self._forced_since} if self.force else {}
        return [IngestMonth(dataset=self.dataset, month=month, refresh=self.refresh, **forced)
                for month in month_range(self.start, self.stop)]

    def __str__(self) -> str:
        return f"Ingest {self.dataset} {self.start:%Y-%m}..{self.stop:%Y-%m}"
