"""Loading one month's CSV into its partition: a stage table, COPY (one or several connections),
a row-count check, and the swap that replaces the month's partition.

Nothing here commits the swap: the caller's transaction does, together with the marker
and the load report, so readers see all of a month or none of it.
"""
from __future__ import annotations

import concurrent.futures
import logging
from pathlib import Path

import psycopg2
from luigi.contrib.postgres import PostgresTarget
from psycopg2 import sql

from luigi_tasks import schema
from luigi_tasks.errors import ConfigError, PermanentError, first_line
from luigi_tasks.load_report import create_report_table
from luigi_tasks.pg import serialize_ddl
from luigi_tasks.progress import Progress

logger = logging.getLogger("luigi-interface")


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

    def drop_stage(self, conn) -> None:
        """After a failed load, on the loader's own connection (which still holds the month's lock, so it
        cannot drop another loader's stage): remove the stage table. A connection that is gone cannot,
        and then the next load of the month drops the leftover."""
        if conn.closed:
            return
        try:
            conn.rollback()
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self.stage))
            conn.commit()
        except psycopg2.Error as exc:
            logger.warning("could not drop the stage table %s (the next load of this month will): %s",
                           self.stage.strings[-1], first_line(exc))

    def create_stage(self, cur) -> None:
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self.stage))   # a killed run's leftover
        # The CHECK implies the partition bound, NULL excluded: ATTACH PARTITION then need not scan the
        # month inside the final, locked transaction (without IS NOT NULL, PostgreSQL cannot prove it).
        cur.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS, "
                            "CHECK (source_month IS NOT NULL AND source_month = {}))")
                    .format(self.stage, self.parent, sql.Literal(self.month_value)))

    def copy(self, cur, reader, freeze: bool) -> int:
        options = "FORMAT csv, FREEZE true" if freeze else "FORMAT csv"
        cur.copy_expert(sql.SQL("COPY {} ({}) FROM STDIN WITH (" + options + ")")
                        .format(self.stage, self.cols).as_string(cur.connection), reader)
        return cur.rowcount

    def check(self, loaded: int, expected: int | None) -> None:
        if expected is not None and loaded != expected:
            raise PermanentError(f"{self.dataset} {self.month_value[:7]}: loaded {loaded} rows but the Parquet "
                              f"file has {expected}; rolled back")

    def swap_in(self, cur) -> None:
        """Replace the month's partition by the stage table (inside the final transaction)."""
        for old in _partitions_for(cur, self.table, self.month_value):
            cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(*old)))
        cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(self.stage, sql.Identifier(self.final_name)))
        # The stage's CHECK implies the partition bound, so ATTACH does not scan the rows.
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
    conn.commit()   # the stage is now visible to the other connections: the caller drops it on any failure
    slices = [connect() for _ in ranges]
    try:
        with concurrent.futures.ThreadPoolExecutor(len(ranges)) as pool:
            futures = [pool.submit(_copy_range, c, load, csv_path, r, progress) for c, r in zip(slices, ranges,
                                                                                               strict=True)]
            try:
                counts = [f.result() for f in futures]
            except BaseException:
                # A failed slice, a timeout or a cancel: stop the other COPYs now rather than wait for them.
                for c in slices:
                    c.cancel()
                raise
    finally:
        for c in slices:
            c.close()
    load.check(sum(counts), expected_rows)
    return sum(counts)


def _copy_range(conn, load: MonthLoad, csv_path: Path, byte_range: tuple[int, int],
                progress: Progress | None) -> int:
    reader = _FileRange(csv_path, *byte_range, progress)
    try:
        with conn.cursor() as cur:
            rows = load.copy(cur, reader, freeze=False)
        conn.commit()
        return rows
    finally:
        reader.close()


def prepare_tables(conn, table: tuple[str, ...], dataset: str, marker: PostgresTarget) -> None:
    """Create the partitioned table, the load report and the marker table if missing, and commit.

    Done in a short transaction of its own, serialised by an advisory lock, so that
    months loading in parallel neither race to create them nor wait for each other's COPY.
    """
    with conn.cursor() as cur:
        serialize_ddl(cur)
        _ensure_parent(cur, table, dataset)
        create_report_table(cur)
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
        raise ConfigError(f"table {'.'.join(table)} exists but is not partitioned by source_month; "
                          "rename it or choose another table with --LoadMonth-table")
    else:   # an existing table gains the columns added since it was created, in place (NULL in old months)
        cur.execute("SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
                    "AND NOT attisdropped", (sql.Identifier(*table).as_string(cur.connection),))
        present = {r[0] for r in cur.fetchall()}
        for c in schema.columns(dataset):
            if c.name not in present:
                cur.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                    sql.Identifier(*table), sql.Identifier(c.name), sql.SQL(c.pg_type)))


def _partitions_for(cur, table: tuple[str, ...], month_value: str) -> list[tuple[str, str]]:
    cur.execute("""
        SELECT n.nspname, c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE i.inhparent = to_regclass(%s) AND pg_get_expr(c.relpartbound, c.oid) = %s""",
                (sql.Identifier(*table).as_string(cur.connection), f"FOR VALUES IN ('{month_value}')"))
    return cur.fetchall()
