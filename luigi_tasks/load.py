"""LoadMonth: COPY one month's CSV into PostgreSQL, replacing that month atomically.

The table is partitioned by ``source_month``. A month is loaded into a stage table (in
the load's own transaction with one connection, so ``COPY ... FREEZE`` applies and, with
``wal_level=minimal``, no WAL is written; committed first and filled over several
connections otherwise), then swapped in for the old partition, with the luigi marker and
the load report, in one transaction: readers see all of the month or none of it, and a
failed or killed load leaves the table as it was (``luigi_tasks.pg_copy``).
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import luigi
import psycopg2

from luigi_tasks.base import MonthTask, made_by_this_process
from luigi_tasks.blocks import SqlAlchemyConnector
from luigi_tasks.config import DEFAULT_BLOCK, parse_duration, pipeline
from luigi_tasks.convert import ParquetToCsv
from luigi_tasks.errors import PermanentError
from luigi_tasks.files import human_size, read_sidecar, sidecar
from luigi_tasks.load_report import record_load
from luigi_tasks.pg import database_error, session_timeouts
from luigi_tasks.pg_copy import MonthLoad, copy_month, prepare_tables
from luigi_tasks.pg_target import BlockPostgresTarget, canonical_table, parse_table_name
from luigi_tasks.progress import Progress


class LoadMonth(MonthTask):
    """COPY the month's CSV into ``table`` and record it with a PostgresTarget marker."""

    block = luigi.Parameter(default=DEFAULT_BLOCK, description="connection block in config/blocks.yaml")
    table = luigi.Parameter(default="", description="target table; default {dataset}_taxi_trips")
    copy_connections = luigi.IntParameter(default=2, significant=False,
                                          description="parallel COPY connections (1: one COPY ... FREEZE)")
    lock_timeout = luigi.Parameter(default="5 minutes", significant=False,
                                   description="longest wait for a lock (another loader of the month, a DDL lock)")
    name_template = "Load {dataset} {month}"
    # At most [resources] postgres_loads COPYs run at once (per luigid, or per local scheduler).
    resources = {"postgres_loads": 1}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        canonical_table(self.table or f"{self.dataset}_taxi_trips")   # a bad name is refused here, at once

    def requires(self) -> ParquetToCsv:
        return ParquetToCsv(**self.month_args())

    @property
    def table_name(self) -> str:
        """The table's one identity (``t`` and ``public.t`` are the same table): in the marker, the lock,
        the stage table's name and the load report."""
        return canonical_table(self.table or f"{self.dataset}_taxi_trips")

    def connector(self) -> SqlAlchemyConnector:
        if not hasattr(self, "_connector"):
            self._connector = SqlAlchemyConnector.load(self.block)
        return self._connector

    def version(self) -> str:
        """The source version this load is (or would be) made from; empty if unknown. Asked for a version
        (--refresh), it is the version the source served for it (another CDN edge may serve another)."""
        convert = self.requires()
        if self.source_version:
            for info in (read_sidecar(self.csv_path()), read_sidecar(self.raw_path())):
                if info.get("requested") == self.source_version and info.get("version"):
                    return info["version"]
            return self.source_version
        return convert.requires()["raw"].local_version() or convert.local_version() or ""

    def output(self) -> BlockPostgresTarget:
        update_id = f"{self.dataset}:{self.ym}:{self.table_name}:{self.version()}"
        return BlockPostgresTarget(self.connector(), self.table_name, update_id)

    def clean_up(self) -> None:
        """Once the month is committed: delete what ``[pipeline] keep`` does not keep (the seed flow's
        Cleanup task). The CSV by default; with ``none`` the Parquet file too (--refresh and --force then
        download again). A month re-run later is still complete: its marker says so."""
        keep = pipeline().keep
        doomed = [] if keep == "all" else [self.csv_path()] + ([self.raw_path()] if keep == "none" else [])
        freed = sum(_remove(path) for path in doomed)
        if freed:
            names = ", ".join(p.name for p in doomed)
            print(f"{self}: removed {names} ({human_size(freed)}; [pipeline] keep = {keep})")

    def session(self):
        """A connection whose every wait is bounded: locks by ``lock_timeout``, statements by the time
        left to this attempt (a COPY stuck in the server cannot be interrupted from Python)."""
        lock = parse_duration(self.lock_timeout, "lock_timeout")
        return session_timeouts(self.connector().psycopg2_connect(), lock.total_seconds() if lock else None,
                                self.time_left())

    def run(self) -> None:
        csv_path = self.csv_path()
        report = read_sidecar(csv_path)
        expected = report.get("rows")   # the Parquet file's own row count
        if expected is None:   # never load without the count to check it against
            raise PermanentError(f"{csv_path} has no sidecar describing it, so its row count cannot be checked; "
                                 "convert it again (ParquetToCsv)")
        progress = Progress(self, f"{self} into {self.table_name}", csv_path.stat().st_size, "bytes")
        marker = BlockPostgresTarget(self.connector(), self.table_name, f"{self.dataset}:{self.ym}:"
                                     f"{self.table_name}:{report.get('version') or ''}")
        table = parse_table_name(self.table_name)
        load = MonthLoad(table, self.dataset, self.month.strftime("%Y-%m-%d"))
        conn = self.session()
        try:
            prepare_tables(conn, table, self.dataset, marker)
            # One loader per month and table at a time, across processes and hosts.
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"{self.table_name}:{self.ym}",))
            age = marker.age()
            if age is not None and not self.expired(age):
                if made_by_this_process(age):
                    print(f"{self.table_name} {self.ym}: loaded meanwhile by another process; nothing to do")
                else:   # run because its input expired: fetched again, it is the version already loaded
                    print(f"{self.table_name} {self.ym}: source unchanged since it was loaded (version "
                          f"{report.get('version')}): the month stays as loaded")
                self.clean_up()
                return
            try:
                rows = copy_month(conn, load, csv_path, expected, self.session, report.get("offsets"),
                                  self.copy_connections, progress)
                with conn.cursor() as cur:
                    load.swap_in(cur)
                record_load(conn, self.table_name, self.dataset, load.month_value, report, rows)
                marker.replace(conn)
                conn.commit()
            except BaseException:
                load.drop_stage(conn)   # a failed, timed-out or cancelled load leaves no stage table
                raise
        except psycopg2.Error as exc:
            raise database_error(f"load into {self.table_name} failed", exc) from exc
        finally:
            conn.close()   # also releases the advisory lock; an uncommitted swap rolls back
        progress.finish()
        self.clean_up()
        self.set_status_message(f"{self}: {rows:,} rows in {self.table_name}")
        print(f"loaded {rows:,} rows into {self.table_name} for {self.ym} "
              f"({report.get('pickups_outside_month', 0):,} with a pickup outside the month)")


def _remove(path: Path) -> int:
    """Remove a file and its sidecar; the bytes freed."""
    freed = 0
    for p in (path, sidecar(path)):
        with contextlib.suppress(FileNotFoundError):   # already gone: nothing to free
            freed += p.stat().st_size
            p.unlink()
    return freed


def load_block_name() -> str:
    """The block loads go to: ``[LoadMonth] block``, or ``--LoadMonth-block`` on the command line."""
    return LoadMonth.block.task_value("LoadMonth", "block")
