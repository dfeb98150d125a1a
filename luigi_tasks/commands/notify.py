"""``python -m luigi_tasks notify test NAME``: send a test message through an apprise block."""
from __future__ import annotations

import argparse
import datetime as dt
import os
import socket

from luigi_tasks.errors import TransientError
from luigi_tasks.notifications import send
from luigi_tasks.run_store import RunRecord

HELP = "send a test notification through an apprise block and report delivery per URL"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    sub = ap.add_subparsers(dest="action", required=True)
    sub.add_parser("test", help="send a test message").add_argument("name", help="an apprise block")


def run(args: argparse.Namespace) -> int:
    now = dt.datetime.now(dt.timezone.utc)
    record = RunRecord(run_id="test", what=f"a test of notification block {args.name!r}", command="notify test",
                       started_at=now, ended_at=now, state="Completed", exit_code=0,
                       log=os.environ.get("LUIGI_TASKS_LOG"), host=socket.gethostname())
    results = send(args.name, record)
    for shown, delivered in results:
        print(f"{'delivered' if delivered else 'FAILED':<9}  {shown}")
    failed = sum(not delivered for _, delivered in results)
    if failed:
        raise TransientError(f"{failed} of {len(results)} URL(s) of block {args.name!r} did not take the message")
    return 0
