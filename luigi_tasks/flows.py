"""Flows: what a user runs."""
from __future__ import annotations

import luigi

from luigi_tasks.load import LoadMonth
from luigi_tasks.tasks import MonthTask


class IngestMonth(MonthTask, luigi.WrapperTask):
    """Download, convert and load one month: ``luigi --module luigi_tasks IngestMonth --month 2022-01``."""

    def requires(self) -> LoadMonth:
        return LoadMonth(dataset=self.dataset, month=self.month)
