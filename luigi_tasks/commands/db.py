"""``python -m luigi_tasks db start|stop|status|url|psql``: the embedded PostgreSQL server of a block."""
from __future__ import annotations

import argparse
import os

from luigi_tasks.blocks import EmbeddedPostgres
from luigi_tasks.config import DEFAULT_BLOCK
from luigi_tasks.localdb import pg_bin

HELP = "the embedded PostgreSQL server: start, stop, status (exit 3 when stopped), url, psql"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("action", choices=["start", "stop", "status", "url", "psql"])
    ap.add_argument("--block", default=DEFAULT_BLOCK, help="an embedded-postgres block (default: %(default)s)")
    ap.add_argument("psql_args", nargs="*", help="extra arguments for psql (after --)")


def run(args: argparse.Namespace) -> int:
    block = EmbeddedPostgres.load(args.block)
    server = block.server
    if args.action == "start":
        block.ensure_running()
        print(f"running: {server.data_dir} (socket {server.socket_dir}, database {block.database})")
    elif args.action == "stop":
        server.stop()
        print(f"stopped: {server.data_dir}")
    elif args.action == "status":
        running = server.is_running()
        print(f"{'running' if running else 'stopped'}: {server.data_dir}")
        return 0 if running else 3
    elif args.action == "url":
        print(server.url(block.database))
    else:
        block.ensure_running()
        os.execv(pg_bin("psql"), [pg_bin("psql"), server.url(block.database), *args.psql_args])
    return 0
