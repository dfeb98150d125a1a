"""``python -m luigi_tasks blocks list | show NAME | check NAME``: the connection blocks."""
from __future__ import annotations

import argparse

from luigi_tasks.blocks import SqlAlchemyConnector, read_registry

HELP = "list, show (secrets masked) and check connection blocks"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    sub = ap.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="list blocks with their type")
    sub.add_parser("show", help="show a block, secrets masked").add_argument("name")
    sub.add_parser("check", help="connect and report the server version").add_argument("name")


def _server_version(block: SqlAlchemyConnector) -> str:
    conn = block.psycopg2_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            return cur.fetchone()[0]
    finally:
        conn.close()


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        for name, spec in read_registry().items():
            print(f"{name}\t{spec.get('type')}")
        return 0
    block = SqlAlchemyConnector.load(args.name)
    if args.action == "show":
        print(repr(block))
    else:
        print(f"ok: {block.name} -> {block.describe()}: PostgreSQL {_server_version(block)}")
    return 0
