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


class _PipelineFallback:
    """A task parameter that, when neither the command line nor the family's section sets it, is read
    from ``[pipeline]`` before its default: ``[pipeline] retries = 2`` applies to every task,
    ``[DownloadMonth] retries = 3`` to one family. (luigi's ``config_path`` does the same lookup but
    warns that it is deprecated.)"""

    def _value_iterator(self, task_name, param_name):
        values = list(super()._value_iterator(task_name, param_name))   # command line, [family], default
        yield from values[:-1]
        yield (self._get_value_from_config("pipeline", param_name), None)
        yield values[-1]


class SharedParameter(_PipelineFallback, luigi.Parameter):
    pass


class SharedIntParameter(_PipelineFallback, luigi.IntParameter):
    pass


class SharedFloatParameter(_PipelineFallback, luigi.FloatParameter):
    pass
