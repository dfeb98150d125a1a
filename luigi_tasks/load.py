"""LoadMonth: COPY one month's CSV into PostgreSQL, replacing that month atomically.

The table is partitioned by ``source_month``.  A month is loaded into a new
table created in the load's own transaction (so ``COPY ... FREEZE`` applies and,
with ``wal_level=minimal``, no WAL is written), then swapped in for the old
partition, with the luigi marker, in that same transaction: readers see all of
the month or none of it, and a failed or killed load leaves nothing behind.
"""
from __future__ import annotations

import re
from pathlib import Path

import luigi
import psycopg2
import pyarrow.parquet as pq
from luigi.contrib.postgres import PostgresTarget
from psycopg2 import sql

from luigi_tasks import schema
from luigi_tasks.blocks import SqlAlchemyConnector, first_line
from luigi_tasks.convert import ParquetToCsv
from luigi_tasks.errors import IngestError
from luigi_tasks.progress import Progress
from luigi_tasks.tasks import MonthTask

_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,47}")


def parse_table_name(name: str) -> tuple[str, ...]:
    """``table`` or ``schema.table``, each part a plain lower-case identifier."""
    parts = tuple(name.split("."))
    if not 1 <= len(parts) <= 2 or not all(_IDENT.fullmatch(p) for p in parts):
        raise IngestError(f"invalid table name {name!r}: use a plain lower-case identifier "
                          "such as yellow_taxi_trips (optionally schema.table)")
    return parts


class BlockPostgresTarget(PostgresTarget):
    """luigi's marker target, connecting through a block (Unix sockets, sslmode, ...)."""

    def __init__(self, block: SqlAlchemyConnector, table: str, update_id: str) -> None:
        self.block = block
        super().__init__(host=block.host, database=block.database, user=block.username,
                         password=None, table=table, update_id=update_id, port=block.port)

    def connect(self):
        conn = self.block.psycopg2_connect()
        conn.set_client_encoding("utf-8")
        return conn

    def exists(self, connection=None) -> bool:
        try:
            return super().exists(connection)
        except psycopg2.Error as exc:
            raise IngestError(f"marker lookup in {self.block.describe()} failed: {first_line(exc)}") from None


class _FileReader:
    """File wrapper that counts bytes as COPY pulls them, for progress."""

    def __init__(self, fh, progress: Progress | None) -> None:
        self.fh, self.progress = fh, progress

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        if self.progress:
            self.progress.update(len(data))
        return data

    readline = read


def copy_month(conn, table: tuple[str, ...], dataset: str, month_value: str, csv_path: Path,
               expected_rows: int | None, progress: Progress | None = None) -> int:
    """Inside the caller's transaction: load ``csv_path`` as the partition for ``month_value``."""
    parent = sql.Identifier(*table)
    suffix = month_value[:7].replace("-", "_")
    final_name = f"{table[-1]}_{suffix}"
    final = sql.Identifier(*table[:-1], final_name)
    stage = sql.Identifier(*table[:-1], f"{final_name}_load")
    cols = sql.SQL(", ").join(sql.Identifier(c.name) for c in schema.columns(dataset))
    with conn.cursor() as cur:
        _ensure_parent(cur, table, dataset)
        cur.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS, CHECK (source_month = {}))")
                    .format(stage, parent, sql.Literal(month_value)))
        with open(csv_path, "rb") as fh:
            cur.copy_expert(sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, FREEZE true)")
                            .format(stage, cols).as_string(conn), _FileReader(fh, progress))
        loaded = cur.rowcount
        if expected_rows is not None and loaded != expected_rows:
            raise IngestError(f"{dataset} {month_value[:7]}: loaded {loaded} rows but the Parquet file "
                              f"has {expected_rows}; rolled back")
        for old in _partitions_for(cur, table, month_value):
            cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(*old)))
        cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(stage, sql.Identifier(final_name)))
        cur.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES IN ({})")
                    .format(parent, final, sql.Literal(month_value)))
    return loaded


def _ensure_parent(cur, table: tuple[str, ...], dataset: str) -> None:
    # Serialise creation: two months loading at once must not both create the table.
    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (".".join(table),))
    cur.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)",
                (sql.Identifier(*table).as_string(cur.connection),))
    row = cur.fetchone()
    if row is None:
        cols = sql.SQL(",\n  ").join(sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.pg_type))
                                     for c in schema.columns(dataset))
        cur.execute(sql.SQL("CREATE TABLE {} (\n  {}\n) PARTITION BY LIST (source_month)")
                    .format(sql.Identifier(*table), cols))
    elif row[0] != "p":
        raise IngestError(f"table {'.'.join(table)} exists but is not partitioned by source_month; "
                          "rename it or choose another table with --LoadMonth-table")


def _partitions_for(cur, table: tuple[str, ...], month_value: str) -> list[tuple[str, str]]:
    cur.execute("""
        SELECT n.nspname, c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE i.inhparent = to_regclass(%s) AND pg_get_expr(c.relpartbound, c.oid) = %s""",
                (sql.Identifier(*table).as_string(cur.connection), f"FOR VALUES IN ('{month_value}')"))
    return cur.fetchall()


class LoadMonth(MonthTask):
    """COPY the month's CSV into ``table`` and record it with a PostgresTarget marker."""

    block = luigi.Parameter(default="local-postgres", description="connection block in config/blocks.yaml")
    table = luigi.Parameter(default="", description="target table; default {dataset}_taxi_trips")

    def requires(self) -> ParquetToCsv:
        return ParquetToCsv(dataset=self.dataset, month=self.month)

    @property
    def table_name(self) -> str:
        name = self.table or f"{self.dataset}_taxi_trips"
        parse_table_name(name)
        return name

    def connector(self) -> SqlAlchemyConnector:
        if not hasattr(self, "_connector"):
            self._connector = SqlAlchemyConnector.load(self.block)
        return self._connector

    def output(self) -> BlockPostgresTarget:
        update_id = f"{self.dataset}:{self.ym}:{self.table_name}"
        return BlockPostgresTarget(self.connector(), self.table_name, update_id)

    def run(self) -> None:
        csv_path = Path(self.input().path)
        expected = pq.ParquetFile(self.requires().raw_path()).metadata.num_rows
        progress = Progress(self, f"COPY into {self.table_name}", csv_path.stat().st_size, "bytes")
        conn = self.connector().psycopg2_connect()
        try:
            rows = copy_month(conn, parse_table_name(self.table_name), self.dataset,
                              self.month.strftime("%Y-%m-%d"), csv_path, expected, progress)
            self.output().touch(conn)
            conn.commit()
        except psycopg2.Error as exc:
            raise IngestError(f"load into {self.table_name} failed: {first_line(exc)}") from None
        finally:
            conn.close()
        progress.finish()
        self.set_status_message(f"loaded {rows:,} rows into {self.table_name}")
