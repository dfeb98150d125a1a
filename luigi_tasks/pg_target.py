"""Where a month lands in PostgreSQL: table names, and luigi's marker target reached through a block.

``BlockPostgresTarget`` is luigi's ``PostgresTarget`` (the ``table_updates`` marker row
that says a month is loaded) connecting through a connection block, so Unix sockets,
sslmode and the embedded server work as they do for the load itself.
"""
from __future__ import annotations

import datetime as dt
import re

import psycopg2
from luigi.contrib.postgres import PostgresTarget
from psycopg2 import sql

from luigi_tasks.blocks import SqlAlchemyConnector
from luigi_tasks.errors import ConfigError, IngestError
from luigi_tasks.pg import database_error

_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,47}")


def parse_table_name(name: str) -> tuple[str, str]:
    """``table`` or ``schema.table``, each part a plain lower-case identifier -> (schema, table); a name
    without a schema is in ``public``, always (the SQL names it explicitly, whatever the search_path)."""
    parts = tuple(name.split("."))
    if not 1 <= len(parts) <= 2 or not all(_IDENT.fullmatch(p) for p in parts):
        raise ConfigError(f"invalid table name {name!r}: use a plain lower-case identifier "
                          "such as yellow_taxi_trips (optionally schema.table)")
    return ("public", *parts) if len(parts) == 1 else parts


def canonical_table(name: str) -> str:
    """The one spelling of a table: ``public.t`` and ``t`` are ``t``; another schema stays ``s.t``."""
    schema, table = parse_table_name(name)
    return table if schema == "public" else f"{schema}.{table}"


class BlockPostgresTarget(PostgresTarget):
    """luigi's marker target, connecting through a block (Unix sockets, sslmode, ...).

    ``update_id`` is ``{dataset}:{YYYY-MM}:{table}:{source version}``; with the version
    unknown (raw and CSV files cleaned up after loading) any version of the month counts.
    """

    def __init__(self, block: SqlAlchemyConnector, table: str, update_id: str) -> None:
        self.block = block
        super().__init__(host=block.host, database=block.database, user=block.username,
                         password=None, table=table, update_id=update_id, port=block.port)

    def connect(self):
        conn = self.block.psycopg2_connect()
        conn.set_client_encoding("utf-8")
        return conn

    @property
    def month_prefix(self) -> str:
        return self.update_id.rsplit(":", 1)[0] + ":"

    def age(self) -> dt.timedelta | None:
        """How long ago the marker was written (by the server's clock); None if there is none."""
        any_version = self.update_id.endswith(":")
        query = sql.SQL("SELECT localtimestamp - max(inserted) FROM {} WHERE " +
                        ("starts_with(update_id, %s)" if any_version else "update_id = %s")
                        ).format(sql.Identifier(self.marker_table))
        try:
            conn = self.connect()
        except IngestError as exc:
            raise type(exc)(f"marker lookup failed: {exc}") from exc
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT to_regclass(%s)", (self.marker_table,))
                if cur.fetchone()[0] is None:
                    return None
                cur.execute(query, (self.update_id,))
                return cur.fetchone()[0]
        except psycopg2.Error as exc:
            raise database_error(f"marker lookup in {self.block.describe()} failed", exc) from exc
        finally:
            conn.close()

    def exists(self, connection=None) -> bool:
        return self.age() is not None

    def replace(self, conn) -> None:
        """Inside the load's transaction: drop this month's older markers, then write this one."""
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DELETE FROM {} WHERE starts_with(update_id, %s)")
                        .format(sql.Identifier(self.marker_table)), (self.month_prefix,))
        self.touch(conn)
