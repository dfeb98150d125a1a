"""Every ``luigi.Config`` section of the package and its defaults.

Each class is a section of luigi.cfg; every key also works on the command line as
``--section-key value`` (e.g. ``--pipeline-data-dir /srv/tlc``).
"""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import luigi

from luigi_tasks.errors import ConfigError
from luigi_tasks.months import parse_month, window
from luigi_tasks.params import DatasetParameter

# The block every database task uses unless told otherwise (config/blocks.yaml).
DEFAULT_BLOCK = "local-postgres"


class pipeline(luigi.Config):  # noqa: N801 - the class name is the luigi.cfg section name
    data_dir = luigi.Parameter(default="data", description="where raw Parquet and CSV files are kept")
    log_prints = luigi.BoolParameter(default=True, parsing=luigi.BoolParameter.EXPLICIT_PARSING,
                                     description="send print() inside a task's run() to the log (Prefect)")


class cron(luigi.Config):  # noqa: N801
    lag_months = luigi.IntParameter(default=2, description="the TLC publishes a month about this many months late")
    catch_up_months = luigi.IntParameter(default=12, description="how many published months cron keeps loaded")
    since = luigi.Parameter(default="", description="YYYY-MM: keep every month since this one (overrides catch_up)")
    dataset = DatasetParameter(default="yellow")


class luigid(luigi.Config):  # noqa: N801
    address = luigi.Parameter(default="127.0.0.1", description="interface luigid listens on")
    port = luigi.IntParameter(default=8082)
    state_dir = luigi.Parameter(default="data/scheduler", description="state, pid file, logs, config")
    block = luigi.Parameter(default=DEFAULT_BLOCK, description="block whose server keeps the task history")
    history_database = luigi.Parameter(default="luigi_history")


def cron_window(lag: int | None = None, catch_up: int | None = None,
                since: str | None = None) -> tuple[dt.date, dt.date]:
    """[start, stop) of the months cron keeps loaded: ``[cron]`` settings unless given."""
    cfg = cron()
    since = cfg.since if since is None else since
    return window(dt.date.today(), cfg.lag_months if lag is None else lag,
                  cfg.catch_up_months if catch_up is None else catch_up,
                  parse_month(since, "[cron] since") if since else None)


def data_path(*parts: str) -> Path:
    return Path(pipeline().data_dir).joinpath(*parts)


_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600,
          "d": 86400, "day": 86400, "w": 604800, "week": 604800}


def parse_duration(text: str) -> dt.timedelta | None:
    """``"7 days"``, ``"12h"``, ``"1 week 2 days"``; empty or ``never``: None (no expiry)."""
    text = (text or "").strip().lower()
    if text in ("", "never", "none"):
        return None
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+?)s?\b", text)
    if not parts or re.sub(r"[\d.\sa-z]", "", text) or any(unit not in _UNITS for _, unit in parts):
        raise ConfigError(f"invalid cache_expiration {text!r}: use e.g. '7 days', '12 hours', '30 minutes'")
    return dt.timedelta(seconds=sum(float(n) * _UNITS[unit] for n, unit in parts))
