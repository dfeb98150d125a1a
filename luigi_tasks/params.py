"""Parameter types with one-line errors: a month as ``YYYY-MM`` and a TLC dataset name."""
from __future__ import annotations

import datetime as dt

import luigi

from luigi_tasks.errors import ConfigError
from luigi_tasks.months import parse_month
from luigi_tasks.schema import DATASETS


class StrictMonthParameter(luigi.MonthParameter):
    """``YYYY-MM`` only, with an error that says so."""

    def parse(self, s: str) -> dt.date:
        return parse_month(s)


class DatasetParameter(luigi.ChoiceParameter):
    """One of the TLC datasets, with an error that lists them."""

    def __init__(self, **kwargs) -> None:
        super().__init__(choices=DATASETS, var_type=str, **kwargs)

    def normalize(self, var: str) -> str:
        if var not in DATASETS:
            raise ConfigError(f"unknown dataset {var!r}: choose one of {', '.join(DATASETS)}")
        return var
