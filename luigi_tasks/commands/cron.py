"""``python -m luigi_tasks cron``: what the crontab line runs (via ``scripts/cron-ingest``).

Loads the latest published month (today minus ``[cron] lag_months``) and catches up
every month of the window (``[cron] catch_up_months`` back, or ``[cron] since``) that
is not loaded yet, with luigi's ``RangeMonthly``. luigi's process lock makes an
overlapping invocation exit with the "already running" code (10) without doing anything.
Extra arguments go to luigi (e.g. ``--workers 2``, ``--DownloadMonth-url-template ...``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json

import luigi.lock
import luigi.retcodes
from luigi.retcodes import run_with_retcodes

from luigi_tasks import config
from luigi_tasks.months import parse_month

HELP = "what the crontab line runs: the latest published month, and catch-up of missing ones"
accepts_extra = True   # unknown arguments go to luigi


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--central", action="store_true", help="use luigid ([core] default_scheduler_host/port)")
    ap.add_argument("--dry-run", action="store_true", help="print the luigi command line and exit")
    ap.add_argument("--lag-months", type=int, help="override [cron] lag_months")
    ap.add_argument("--catch-up-months", type=int, help="override [cron] catch_up_months")
    ap.add_argument("--since", help="override [cron] since (YYYY-MM)")


def luigi_args(central: bool, extra: list[str], window: tuple[dt.date, dt.date]) -> list[str]:
    start, stop = window
    today = dt.date.today()
    # RangeMonthly ignores months older than now - months_back (13 by default): reach back to start.
    months_back = (today.year - start.year) * 12 + today.month - start.month + 1
    args = ["--module", "luigi_tasks", "RangeMonthly", "--of", "IngestMonth", "--param-name", "month",
            "--of-params", json.dumps({"dataset": config.cron().dataset}),
            "--start", f"{start:%Y-%m}", "--stop", f"{stop:%Y-%m}", "--months-back", str(months_back)]
    return args + ([] if central else ["--local-scheduler"]) + extra


def run(args: argparse.Namespace) -> int:
    if args.since:
        parse_month(args.since, "--since")
    window = config.cron_window(args.lag_months, args.catch_up_months, args.since)
    command = luigi_args(args.central, args.extra, window)
    if args.dry_run:
        print("luigi " + " ".join(command))
        return 0
    lock_dir = config.data_path("locks").absolute()
    lock_dir.mkdir(parents=True, exist_ok=True)
    # luigi's own lock, taken here rather than per luigi run: it names this process's command line.
    if not luigi.lock.acquire_for(str(lock_dir)):
        print("already running: an identical `python -m luigi_tasks cron` holds the lock; nothing done")
        return luigi.retcodes.retcode().already_running
    code = _run(command + ["--no-lock"])
    if code in (luigi.retcodes.retcode().already_running, luigi.retcodes.retcode().not_run):
        # Some tasks were run by another worker (several hosts sharing a backfill): luigi cannot tell
        # whether they finished. Asking again costs a completeness check and gives the real answer.
        code = _run(command + ["--no-lock"])
    return code


def _run(args: list[str]) -> int:
    try:
        run_with_retcodes(args)
    except SystemExit as exc:   # run_with_retcodes always exits with the [retcode] code
        return int(exc.code or 0)
    return 0
