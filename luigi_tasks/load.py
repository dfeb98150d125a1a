"""LoadMonth: COPY one month's CSV into PostgreSQL, replacing that month atomically.

The table is partitioned by ``source_month``.  A month is loaded into a new
table created in the load's own transaction (so ``COPY ... FREEZE`` applies and,
with ``wal_level=minimal``, no WAL is written), then swapped in for the old
partition, with the luigi marker, in that same transaction: readers see all of
the month or none of it, and a failed or killed load leaves nothing behind.
"""
from __future__ import annotations

import concurrent.futures
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


class _FileRange:
    """A byte range of a file, read by COPY; counts bytes for progress."""

    def __init__(self, path: Path, start: int, stop: int, progress: Progress | None) -> None:
        self.fh = open(path, "rb")
        self.fh.seek(start)
        self.left, self.progress = stop - start, progress

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data = self.fh.read(size) if size > 0 else b""
        self.left -= len(data)
        if self.progress:
            self.progress.update(len(data))
        return data

    readline = read

    def close(self) -> None:
        self.fh.close()


def split_ranges(size: int, offsets: list[int] | None, parts: int) -> list[tuple[int, int]]:
    """Cut [0, size) into about ``parts`` ranges at row boundaries (``offsets``, from the converter)."""
    if parts <= 1 or not offsets:
        return [(0, size)]
    cuts = sorted({min(offsets, key=lambda o: abs(o - size * k // parts)) for k in range(1, parts)} - {0, size})
    bounds = [0, *cuts, size]
    return list(zip(bounds, bounds[1:], strict=False))


class MonthLoad:
    """Names and SQL for loading one month of ``table`` through a stage table."""

    def __init__(self, table: tuple[str, ...], dataset: str, month_value: str) -> None:
        self.table, self.dataset, self.month_value = table, dataset, month_value
        self.parent = sql.Identifier(*table)
        self.final_name = f"{table[-1]}_{month_value[:7].replace('-', '_')}"
        self.final = sql.Identifier(*table[:-1], self.final_name)
        self.stage = sql.Identifier(*table[:-1], f"{self.final_name}_load")
        self.cols = sql.SQL(", ").join(sql.Identifier(c.name) for c in schema.columns(dataset))

    def create_stage(self, cur) -> None:
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self.stage))   # a killed run's leftover
        cur.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS, CHECK (source_month = {}))")
                    .format(self.stage, self.parent, sql.Literal(self.month_value)))

    def copy(self, cur, reader, freeze: bool) -> int:
        options = "FORMAT csv, FREEZE true" if freeze else "FORMAT csv"
        cur.copy_expert(sql.SQL("COPY {} ({}) FROM STDIN WITH (" + options + ")")
                        .format(self.stage, self.cols).as_string(cur.connection), reader)
        return cur.rowcount

    def check(self, loaded: int, expected: int | None) -> None:
        if expected is not None and loaded != expected:
            raise IngestError(f"{self.dataset} {self.month_value[:7]}: loaded {loaded} rows but the Parquet "
                              f"file has {expected}; rolled back")

    def swap_in(self, cur) -> None:
        """Replace the month's partition by the stage table (inside the final transaction)."""
        for old in _partitions_for(cur, self.table, self.month_value):
            cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(*old)))
        cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(self.stage, sql.Identifier(self.final_name)))
        # The CHECK constraint matches the partition bound, so ATTACH does not scan the rows.
        cur.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES IN ({})")
                    .format(self.parent, self.final, sql.Literal(self.month_value)))


def copy_month(conn, load: MonthLoad, csv_path: Path, expected_rows: int | None, connect=None,
               offsets: list[int] | None = None, connections: int = 1, progress: Progress | None = None) -> int:
    """Fill the stage table; on return the caller's transaction (on ``conn``) may swap it in.

    One connection: the stage is created in the caller's transaction and loaded with
    ``COPY ... FREEZE`` (no WAL with wal_level=minimal). Several: the stage is committed
    first and each connection COPYs a slice of the CSV in parallel, since one COPY is
    bound to one server core. Either way nothing is visible until the caller commits.
    """
    ranges = split_ranges(csv_path.stat().st_size, offsets, connections if connect else 1)
    with conn.cursor() as cur:
        load.create_stage(cur)
        if len(ranges) == 1:
            reader = _FileRange(csv_path, 0, ranges[0][1], progress)
            try:
                loaded = load.copy(cur, reader, freeze=True)
            finally:
                reader.close()
            load.check(loaded, expected_rows)
            return loaded
    conn.commit()
    with concurrent.futures.ThreadPoolExecutor(len(ranges)) as pool:
        counts = list(pool.map(lambda r: _copy_range(connect, load, csv_path, r, progress), ranges))
    load.check(sum(counts), expected_rows)
    return sum(counts)


def _copy_range(connect, load: MonthLoad, csv_path: Path, byte_range: tuple[int, int],
                progress: Progress | None) -> int:
    conn = connect()
    reader = _FileRange(csv_path, *byte_range, progress)
    try:
        with conn.cursor() as cur:
            rows = load.copy(cur, reader, freeze=False)
        conn.commit()
        return rows
    finally:
        reader.close()
        conn.close()


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
    copy_connections = luigi.IntParameter(default=2, significant=False,
                                          description="parallel COPY connections (1: one COPY ... FREEZE)")
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
        table = parse_table_name(self.table_name)
        load = MonthLoad(table, self.dataset, self.month.strftime("%Y-%m-%d"))
        conn = self.connector().psycopg2_connect()
        try:
            prepare_tables(conn, table, self.dataset, marker)
            # One loader per month and table at a time, across processes and hosts.
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"{self.table_name}:{self.ym}",))
            age = marker.age()
            if age is not None and not self.expired(age):
                print(f"{self.table_name} {self.ym}: already loaded (by another process); nothing to do")
                return
            rows = copy_month(conn, load, csv_path, expected, self.connector().psycopg2_connect,
                              report.get("offsets"), self.copy_connections, progress)
            with conn.cursor() as cur:
                load.swap_in(cur)
            record_load(conn, self.table_name, self.dataset, load.month_value, report, rows)
            marker.replace(conn)
            conn.commit()
        except psycopg2.Error as exc:
            raise IngestError(f"load into {self.table_name} failed: {first_line(exc)}") from None
        finally:
            conn.close()   # also releases the advisory lock; an uncommitted swap rolls back
        progress.finish()
        self.set_status_message(f"{self}: {rows:,} rows in {self.table_name}")
        print(f"loaded {rows:,} rows into {self.table_name} for {self.ym} "
              f"({report.get('pickups_outside_month', 0):,} with a pickup outside the month)")
