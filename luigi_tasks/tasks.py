"""What every month task shares: its parameters, names and file locations."""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import luigi

from luigi_tasks.config import data_path
from luigi_tasks.errors import IngestError
from luigi_tasks.schema import DATASETS


class StrictMonthParameter(luigi.MonthParameter):
    """``YYYY-MM`` only, with an error that says so (luigi's own accepts and rejects less clearly)."""

    def parse(self, s: str) -> dt.date:
        if not re.fullmatch(r"\d{4}-\d{2}", s or "") or not 1 <= int(s[5:]) <= 12:
            raise IngestError(f"invalid month {s!r}: expected YYYY-MM, e.g. 2022-01")
        return super().parse(s)


class MonthTask(luigi.Task):
    dataset = luigi.ChoiceParameter(choices=DATASETS, default="yellow", description="TLC dataset")
    month = StrictMonthParameter(description="month to ingest, YYYY-MM")

    @property
    def ym(self) -> str:
        return self.month.strftime("%Y-%m")

    def raw_path(self) -> Path:
        return data_path("raw", self.dataset, f"{self.dataset}_tripdata_{self.ym}.parquet")

    def csv_path(self) -> Path:
        return data_path("csv", self.dataset, f"{self.dataset}_tripdata_{self.ym}.csv")

