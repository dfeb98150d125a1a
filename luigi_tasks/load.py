"""LoadMonth: COPY one month's CSV into PostgreSQL, replacing that month atomically.

The table is partitioned by ``source_month``.  A month is loaded into a new
table created in the load's own transaction (so ``COPY ... FREEZE`` applies and,
with ``wal_level=minimal``, no WAL is written), then swapped in for the old
partition, with the luigi marker, in that same transaction: readers see all of
the month or none of it, and a failed or killed load leaves nothing behind.
"""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import luigi
import psycopg2
from luigi.contrib.postgres import PostgresTarget
from psycopg2 import sql

from luigi_tasks import schema
from luigi_tasks.blocks import SqlAlchemyConnector, first_line
from luigi_tasks.convert import ParquetToCsv
from luigi_tasks.download import read_sidecar
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


LOAD_REPORT = "ingest_loads"


def record_load(conn, table: str, dataset: str, month_value: str, report: dict, rows: int) -> None:
    """Inside the load's transaction: the month's row in the load report (read by the status command)."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("""INSERT INTO {} VALUES (%s, %s, %s, %s, %s, %s, %s, now())
            ON CONFLICT (table_name, source_month) DO UPDATE SET dataset = EXCLUDED.dataset, rows = EXCLUDED.rows,
              pickups_outside_month = EXCLUDED.pickups_outside_month, source_version = EXCLUDED.source_version,
              source_url = EXCLUDED.source_url, loaded_at = now()""").format(sql.Identifier(LOAD_REPORT)),
                    (table, month_value, dataset, rows, report.get("pickups_outside_month"),
                     report.get("version"), report.get("url")))


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
            raise IngestError(f"marker lookup failed: {exc}") from None
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT to_regclass(%s)", (self.marker_table,))
                if cur.fetchone()[0] is None:
                    return None
                cur.execute(query, (self.update_id,))
                return cur.fetchone()[0]
        except psycopg2.Error as exc:
            raise IngestError(f"marker lookup in {self.block.describe()} failed: {first_line(exc)}") from None
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


def prepare_tables(conn, table: tuple[str, ...], dataset: str, marker: PostgresTarget) -> None:
    """Create the partitioned table, the load report and the marker table if missing, and commit.

    Done in a short transaction of its own, serialised by an advisory lock, so that
    months loading in parallel neither race to create them nor wait for each other's COPY.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('luigi_tasks ddl'))")
        _ensure_parent(cur, table, dataset)
        cur.execute(sql.SQL("""CREATE TABLE IF NOT EXISTS {} (
            table_name text, source_month date, dataset text, rows bigint, pickups_outside_month bigint,
            source_version text, source_url text, loaded_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (table_name, source_month))""").format(sql.Identifier(LOAD_REPORT)))
        marker.create_marker_table()   # on its own connection, still inside our lock
    conn.commit()


def _ensure_parent(cur, table: tuple[str, ...], dataset: str) -> None:
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
    name_template = "Load {dataset} {month}"
    # At most [resources] postgres_loads COPYs run at once (per luigid, or per local scheduler).
    resources = {"postgres_loads": 1}

    def requires(self) -> ParquetToCsv:
        return ParquetToCsv(**self.month_args())

    @property
    def table_name(self) -> str:
        name = self.table or f"{self.dataset}_taxi_trips"
        parse_table_name(name)
        return name

    def connector(self) -> SqlAlchemyConnector:
        if not hasattr(self, "_connector"):
            self._connector = SqlAlchemyConnector.load(self.block)
        return self._connector

    def version(self) -> str:
        """The source version this load is (or would be) made from; empty if unknown."""
        convert = self.requires()
        return (self.source_version or convert.requires().local_version() or convert.local_version() or "")

    def output(self) -> BlockPostgresTarget:
        update_id = f"{self.dataset}:{self.ym}:{self.table_name}:{self.version()}"
        return BlockPostgresTarget(self.connector(), self.table_name, update_id)

    def output_age(self) -> dt.timedelta | None:
        return self.output().age()

    def run(self) -> None:
        csv_path = self.csv_path()
        report = read_sidecar(csv_path)
        expected = report.get("rows")   # the Parquet file's own row count
        progress = Progress(self, f"{self} into {self.table_name}", csv_path.stat().st_size, "bytes")
        marker = BlockPostgresTarget(self.connector(), self.table_name, f"{self.dataset}:{self.ym}:"
                                     f"{self.table_name}:{report.get('version') or ''}")
        conn = self.connector().psycopg2_connect()
        try:
            prepare_tables(conn, parse_table_name(self.table_name), self.dataset, marker)
            rows = copy_month(conn, parse_table_name(self.table_name), self.dataset,
                              self.month.strftime("%Y-%m-%d"), csv_path, expected, progress)
            record_load(conn, self.table_name, self.dataset, self.month.strftime("%Y-%m-%d"), report, rows)
            marker.replace(conn)
            conn.commit()
        except psycopg2.Error as exc:
            raise IngestError(f"load into {self.table_name} failed: {first_line(exc)}") from None
        finally:
            conn.close()
        progress.finish()
        self.set_status_message(f"{self}: {rows:,} rows in {self.table_name}")
        print(f"loaded {rows:,} rows into {self.table_name} for {self.ym} "
              f"({report.get('pickups_outside_month', 0):,} with a pickup outside the month)")
