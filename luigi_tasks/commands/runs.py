"""``python -m luigi_tasks runs``: the run history (Prefect's flow runs), newest first.

    python -m luigi_tasks runs [--json] [--limit N] [--failed] [--block NAME]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json

from luigi_tasks.blocks import EmbeddedPostgres
from luigi_tasks.config import runs as runs_config
from luigi_tasks.runs import history

HELP = "the run history, newest first: state, exit code, error, months and rows of every run"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--json", action="store_true", help="a list of objects, for scripts")
    ap.add_argument("--limit", type=int, default=20, help="how many runs (default %(default)s)")
    ap.add_argument("--failed", action="store_true", help="only runs that did not complete")
    ap.add_argument("--block", help="connection block (default: [LoadMonth] block)")


def run(args: argparse.Namespace) -> int:
    store = history(args.block)
    if isinstance(store.block, EmbeddedPostgres) and not store.block.server.is_running():
        print(f"database: the embedded server ({store.block.server.data_dir}) is not running: no runs to show")
        return 3
    store.mark_crashed(runs_config().heartbeat_seconds)
    records = store.list(args.limit, args.failed)
    if args.json:
        print(json.dumps([r.as_json() for r in records], indent=1))
        return 0
    if not records:
        print("no runs recorded")
        return 0
    print(f"{'run':<12}  {'started (UTC)':<19}  {'state':<11} {'exit':>4}  {'rows':>11}  what / error")
    for r in records:
        print(f"{r.run_id:<12}  {r.started_at.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M:%S}  {r.state:<11} "
              f"{'' if r.exit_code is None else r.exit_code:>4}  {r.rows:>11,}  {r.what}")
        if r.error:
            print(f"{'':<14}{r.error}")
    return 0
