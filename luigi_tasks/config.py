"""Every ``luigi.Config`` section of the package and its defaults, and where luigi.cfg is found.

Each class is a section of luigi.cfg; every key also works on the command line as
``--section-key value`` (e.g. ``--pipeline-data-dir /srv/tlc``).

luigi reads ``./luigi.cfg`` and ``$LUIGI_CONFIG_PATH`` only, so a cron job started in
another directory would run with no configuration at all (every exit code 0). Importing
the package therefore also reads the checkout's own ``luigi.cfg`` first (``./luigi.cfg``
and ``LUIGI_CONFIG_PATH`` still override it), and relative paths in a config file
(``data_dir``, the logging config, the block registry, luigid's state) are taken relative
to the file that sets them, not to the working directory.
"""
from __future__ import annotations

import configparser
import datetime as dt
import os
import re
from pathlib import Path

import luigi
import luigi.configuration

from luigi_tasks.errors import ConfigError
from luigi_tasks.months import parse_month, window
from luigi_tasks.params import DatasetParameter

# The block every database task uses unless told otherwise (config/blocks.yaml).
DEFAULT_BLOCK = "local-postgres"


class pipeline(luigi.Config):  # noqa: N801 - the class name is the luigi.cfg section name
    data_dir = luigi.Parameter(default="data", description="where raw Parquet and CSV files are kept")
    blocks = luigi.Parameter(default="config/blocks.yaml",
                             description="the block registry ($LUIGI_TASKS_BLOCKS overrides it)")
    keep = luigi.ChoiceParameter(choices=["all", "raw", "none"], var_type=str, default="raw",
                                 description="files kept once a month is loaded: all, raw (the Parquet file), none")
    disk_reserve = luigi.Parameter(default="100 MB", description="free space a download or conversion must leave")
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


class runs(luigi.Config):  # noqa: N801
    record = luigi.BoolParameter(default=True, parsing=luigi.BoolParameter.EXPLICIT_PARSING,
                                 description="record every run in ingest_runs on the [LoadMonth] block's server")
    heartbeat_seconds = luigi.FloatParameter(default=30.0, description="how often a running run says it is alive")
    cancelled_code = luigi.IntParameter(default=50, description="exit code of a run stopped by SIGTERM or SIGINT")


class notify(luigi.Config):  # noqa: N801
    block = luigi.Parameter(default="", description="an apprise block of config/blocks.yaml; empty: none")
    on = luigi.Parameter(default="failure", description="which run endings notify: failure, missing_data, success")


class hooks(luigi.Config):  # noqa: N801
    on_failure = luigi.Parameter(default="", description="package.module:function called when a run fails")
    on_success = luigi.Parameter(default="", description="package.module:function called when a run completes")
    on_completion = luigi.Parameter(default="", description="package.module:function called when any run ends")


def cron_window(lag: int | None = None, catch_up: int | None = None,
                since: str | None = None) -> tuple[dt.date, dt.date]:
    """[start, stop) of the months cron keeps loaded: ``[cron]`` settings unless given."""
    cfg = cron()
    since = cfg.since if since is None else since
    return window(dt.date.today(), cfg.lag_months if lag is None else lag,
                  cfg.catch_up_months if catch_up is None else catch_up,
                  parse_month(since, "[cron] since") if since else None)


_SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str, what: str = "disk_reserve") -> int:
    """``"100 MB"``, ``"2 GiB"``, ``"0"`` -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", (text or "").lower())
    if not match or (match.group(2) or "b") not in _SIZE_UNITS:
        raise ConfigError(f"invalid {what} {text!r}: use e.g. '100 MB', '2 GB', '0'")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2) or "b"])


def data_path(*parts: str) -> Path:
    return Path(pipeline().data_dir).joinpath(*parts)


_UNITS = {**dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
          **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
          **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
          **dict.fromkeys(("d", "day", "days"), 86400),
          **dict.fromkeys(("w", "week", "weeks"), 604800)}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")


def parse_duration(text: str, what: str = "cache_expiration") -> dt.timedelta | None:
    """``"7 days"``, ``"12h"``, ``"1 week 2 days"``, ``"0 seconds"`` (zero: always expired); empty or
    ``never``: None. An unknown unit (``"500ms"``) is an error, never a guess."""
    text = (text or "").strip().lower()
    if text in ("", "never", "none"):
        return None
    parts = _DURATION_PART.findall(text)
    if not parts or _DURATION_PART.sub("", text).strip(" ,") or any(unit not in _UNITS for _, unit in parts):
        raise ConfigError(f"invalid {what} {text!r}: use e.g. '7 days', '12 hours', '30 minutes', '10 s'")
    return dt.timedelta(seconds=sum(float(n) * _UNITS[unit] for n, unit in parts))


# -- where the configuration comes from ------------------------------------------------------
CHECKOUT_CONFIG = Path(__file__).resolve().parent.parent / "luigi.cfg"
# Settings that name a path: relative values are relative to the file that sets them.
PATH_SETTINGS = (("core", "logging_conf_file"), ("core", "lock_pid_dir"), ("pipeline", "data_dir"),
                 ("pipeline", "blocks"), ("luigid", "state_dir"))
_origins: dict[tuple[str, str], Path] = {}


def bootstrap() -> None:
    """Read the checkout's luigi.cfg under the others and anchor relative paths (see the module doc)."""
    parser = luigi.configuration.get_config()
    paths = getattr(type(parser), "_config_paths", None)
    if paths is None:   # a TOML configuration (LUIGI_CONFIG_PARSER=toml): left as luigi reads it
        return
    present = [Path(p) for p in paths if Path(p).is_file()]
    if CHECKOUT_CONFIG.is_file() and CHECKOUT_CONFIG not in {p.resolve() for p in present}:
        paths.insert(0, str(CHECKOUT_CONFIG))
        present.insert(0, CHECKOUT_CONFIG)
        type(parser).reload()   # re-reads every file in order: later files still win
    for path in present:
        raw = configparser.ConfigParser(interpolation=None)
        try:
            raw.read(path)
        except configparser.Error:
            continue   # luigi itself reports a malformed file
        for section, key in PATH_SETTINGS:
            if raw.has_option(section, key):
                _origins[(section, key)] = path.resolve().parent
    for (section, key), origin in _origins.items():
        value = parser.get(section, key, fallback="")
        if value and not os.path.isabs(os.path.expanduser(value)):
            parser.set(section, key, str(origin / value))


def project_dir() -> Path:
    """The directory of the luigi.cfg that names the block registry: relative paths inside the
    registry (an embedded server's data_dir) are taken from here. The working directory if none."""
    return _origins.get(("pipeline", "blocks"), Path.cwd())
