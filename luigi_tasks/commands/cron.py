"""``python -m luigi_tasks cron``: what the crontab line runs (via ``scripts/cron-ingest``).

Loads the latest published month (today minus ``[cron] lag_months``) and catches up
every month of the window (``[cron] catch_up_months`` back, or ``[cron] since``) that
is not loaded yet, with luigi's ``RangeMonthly``, however long the window: its
``task_limit`` is set to the window's length, and after the run every month of the
window is checked, so a run that leaves one unloaded never exits 0. luigi's process
lock makes an overlapping invocation exit with the "already running" code (10) without
doing anything. Extra arguments go to luigi (e.g. ``--workers 2``,
``--DownloadMonth-url-template ...``). The whole invocation is one run (``runs``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex

import luigi.interface
import luigi.lock
import luigi.retcodes
from luigi.cmdline_parser import CmdlineParser
from luigi.retcodes import run_with_retcodes

from luigi_tasks import config, runs
from luigi_tasks.errors import IngestError
from luigi_tasks.flows import IngestMonth
from luigi_tasks.months import month_range, parse_month

HELP = "what the crontab line runs: the latest published month, and catch-up of missing ones"
accepts_extra = True   # unknown arguments go to luigi


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--central", action="store_true", help="use luigid ([core] default_scheduler_host/port)")
    ap.add_argument("--dry-run", action="store_true", help="print the luigi command line (shell-quoted) and exit")
    ap.add_argument("--lag-months", type=int, help="override [cron] lag_months")
    ap.add_argument("--catch-up-months", type=int, help="override [cron] catch_up_months")
    ap.add_argument("--since", help="override [cron] since (YYYY-MM)")


def luigi_args(central: bool, extra: list[str], window: tuple[dt.date, dt.date]) -> list[str]:
    start, stop = window
    today = dt.date.today()
    # RangeMonthly ignores months older than now - months_back (13 by default) and requires at most
    # task_limit (50 by default) missing months per run: reach back to start, take every month.
    months_back = (today.year - start.year) * 12 + today.month - start.month + 1
    args = ["--module", "luigi_tasks", "RangeMonthly", "--of", "IngestMonth", "--param-name", "month",
            "--of-params", json.dumps({"dataset": config.cron().dataset}),
            "--start", f"{start:%Y-%m}", "--stop", f"{stop:%Y-%m}", "--months-back", str(months_back),
            "--task-limit", str(max(1, len(month_range(start, stop))))]
    return args + ([] if central else ["--local-scheduler"]) + extra


def missing_months(command: list[str], window: tuple[dt.date, dt.date]) -> list[str]:
    """Months of the window not loaded, as this command's settings (table, block, ...) see them."""
    with CmdlineParser.global_instance(command):
        dataset = config.cron().dataset
        return [f"{m:%Y-%m}" for m in month_range(*window) if not IngestMonth(dataset=dataset, month=m).complete()]


def run(args: argparse.Namespace) -> int:
    if args.since:
        parse_month(args.since, "--since")
    window = config.cron_window(args.lag_months, args.catch_up_months, args.since)
    command = luigi_args(args.central, args.extra, window)
    if args.dry_run:
        print(shlex.join(["luigi", *command]))
        return 0
    codes = luigi.retcodes.retcode()
    lock_dir = config.data_path("locks").absolute()
    lock_dir.mkdir(parents=True, exist_ok=True)
    with CmdlineParser.global_instance(command):   # luigi's logging, as the luigi command would set it up
        luigi.interface.InterfaceLogging.setup(luigi.interface.core())
        what = f"cron {config.cron().dataset} {window[0]:%Y-%m}..{window[1]:%Y-%m} " \
               f"({len(month_range(*window))} months, stop exclusive)"
    # luigi's own lock, taken here rather than per luigi run: it names this process's command line.
    if not luigi.lock.acquire_for(str(lock_dir)):
        print("already running: an identical `python -m luigi_tasks cron` holds the lock; nothing done")
        return codes.already_running
    with CmdlineParser.global_instance(command):   # the run's block: [LoadMonth] block as these arguments set it
        run = runs.Run(what)
    with runs.active(run):
        try:
            code = _run(command + ["--no-lock"])
            if code in (codes.already_running, codes.not_run):
                # Some tasks were run by another worker (several hosts sharing a backfill): luigi cannot tell
                # whether they finished. Asking again costs a completeness check and gives the real answer.
                code = _run(command + ["--no-lock"])
            missing = missing_months(command, window)
        except runs.Cancelled as exc:
            return _end(run, command, runs.cancelled_code(), "Cancelled", f"cancelled by {exc}")
        except IngestError as exc:   # the completeness check itself failed (database unreachable)
            return _end(run, command, codes.scheduling_error, error=f"cannot check the window: {exc}")
        error = None
        if missing:
            # Never exit 0 with a month of the window unloaded, whatever luigi concluded.
            code = code or codes.not_run
            error = f"{len(missing)} month(s) of the window not loaded: {', '.join(missing)}"
            if run.results and (line := run._error(run.results[-1]["sets"], run.results[-1]["scheduler"])):
                error += f" -- {line}"
        return _end(run, command, code, error=error)


def _end(run: runs.Run, command: list[str], code: int, state: str | None = None, error: str | None = None) -> int:
    """End the run as this command's luigi arguments configure it (--notify-block, --hooks-..., ...)."""
    with CmdlineParser.global_instance(command):
        run.end(code, state, error)
    return code


def _run(args: list[str]) -> int:
    try:
        run_with_retcodes(args)
    except SystemExit as exc:   # run_with_retcodes always exits with the [retcode] code
        return int(exc.code or 0)
    return 0
