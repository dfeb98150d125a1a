"""``python -m luigi_tasks status``: which months are loaded (rows, load time, source version) and which
are missing.

    python -m luigi_tasks status [--dataset yellow] [--start 2022-01] [--stop 2023-01] [--json]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json

from luigi_tasks.blocks import EmbeddedPostgres
from luigi_tasks.config import cron_window
from luigi_tasks.load import LoadMonth
from luigi_tasks.load_report import loaded_months
from luigi_tasks.months import add_months, month_range, parse_month
from luigi_tasks.pg_target import BlockPostgresTarget
from luigi_tasks.runs import last_run
from luigi_tasks.schema import DATASETS

HELP = "which months are loaded (rows, load time, source version) and which are missing"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--dataset", choices=DATASETS, default="yellow")
    ap.add_argument("--block", help="connection block (default: [LoadMonth] block)")
    ap.add_argument("--table", help="table (default: [LoadMonth] table or {dataset}_taxi_trips)")
    ap.add_argument("--start", type=parse_month, help="first month to check (default: cron's window)")
    ap.add_argument("--stop", type=parse_month, help="month after the last to check (default: next to publish)")
    ap.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    task = LoadMonth(dataset=args.dataset, month=dt.date.today().replace(day=1), **{
        k: v for k, v in (("block", args.block), ("table", args.table)) if v})
    table = task.table_name
    block = task.connector()
    if isinstance(block, EmbeddedPostgres) and not block.server.is_running():
        # Looking must not start a server as a side effect: say so instead.
        print(f"database: the embedded server ({block.server.data_dir}) is not running; it starts with the first "
              "load, or with `python -m luigi_tasks db start`")
        return 3
    loaded = loaded_months(block, table, BlockPostgresTarget.marker_table)
    start, stop = cron_window()
    if loaded:
        start = min(start, dt.date.fromisoformat(min(loaded) + "-01"))
    start, stop = args.start or start, args.stop or stop
    window = [f"{m:%Y-%m}" for m in month_range(start, stop)]
    missing = [m for m in window if m not in loaded]
    if args.start or args.stop:   # an explicit range limits the table too, not only the missing line
        loaded = {m: row for m, row in loaded.items() if m in window}
    last = last_run(task.block)
    if args.json:
        print(json.dumps({"table": table, "dataset": args.dataset, "start": f"{start:%Y-%m}",
                          "stop": f"{stop:%Y-%m}", "loaded": list(loaded.values()), "missing": missing,
                          "last_run": last.as_json() if last else None}, indent=1))
        return 0
    print(f"{table} ({args.dataset}): {len(loaded)} month(s) loaded, {sum(r['rows'] for r in loaded.values()):,} rows")
    if loaded:
        print(f"{'month':<8} {'rows':>12} {'outside month':>14}  {'loaded at':<19}  version")
        for r in loaded.values():
            print(f"{r['month']:<8} {r['rows']:>12,} {r['pickups_outside_month'] or 0:>14,}  "
                  f"{r['loaded_at'][:19]:<19}  {r['source_version'] or '-'}")
    print(f"missing in {start:%Y-%m}..{add_months(stop, -1):%Y-%m}: {', '.join(missing) if missing else 'none'}")
    if last:
        print(f"last run: {last.run_id} {last.state}, exit code {last.exit_code}, {last.what}"
              f"{f' -- {last.error}' if last.error else ''}")
    return 0

