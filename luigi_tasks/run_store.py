"""The run history: table ``ingest_runs`` on the loads' PostgreSQL server, one row per invocation.

A row is written when a run starts (state ``Running``), refreshed by a heartbeat while
it runs, and completed when it ends. A row left ``Running`` by a process that no longer
exists (SIGKILL, power loss) is marked ``Crashed`` by the next run or by ``status``/``runs``:
on the same host when its pid is gone, from any host when its heartbeat is older than
``STALE_HEARTBEATS`` heartbeats.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import socket

import psycopg2
from psycopg2 import sql
from psycopg2.extras import Json

from luigi_tasks.blocks import SqlAlchemyConnector
from luigi_tasks.files import pid_alive
from luigi_tasks.pg import database_error, serialize_ddl

RUNS_TABLE = "ingest_runs"
STATES = ("Running", "Completed", "Failed", "MissingData", "Crashed", "Cancelled")
STALE_HEARTBEATS = 4
CRASH_ERROR = "the process ended without finishing the run (killed, or its machine stopped)"


@dataclasses.dataclass
class RunRecord:
    run_id: str
    what: str
    command: str
    started_at: dt.datetime
    host: str = dataclasses.field(default_factory=socket.gethostname)
    pid: int = dataclasses.field(default_factory=os.getpid)
    state: str = "Running"
    ended_at: dt.datetime | None = None
    exit_code: int | None = None
    error: str | None = None
    months: list[str] = dataclasses.field(default_factory=list)
    rows: int = 0
    log: str | None = None
    tasks: dict[str, int] = dataclasses.field(default_factory=dict)

    def as_json(self) -> dict:
        data = dataclasses.asdict(self)
        for key in ("started_at", "ended_at"):
            data[key] = data[key].isoformat(timespec="seconds") if data[key] else None
        return data


_COLUMNS = ("run_id", "what", "command", "started_at", "host", "pid", "state", "ended_at", "exit_code", "error",
            "months", "rows", "log", "tasks")


class RunStore:
    """``ingest_runs`` on a block's server; every method opens and closes its own connection."""

    def __init__(self, block: SqlAlchemyConnector) -> None:
        self.block = block
        self._ready = False

    def _execute(self, what: str, statement, params=(), fetch: bool = False):
        try:
            conn = self.block.psycopg2_connect()
        except psycopg2.Error as exc:   # pragma: no cover - psycopg2_connect already classifies
            raise database_error(what, exc) from exc
        try:
            with conn.cursor() as cur:
                if not self._ready:
                    self._create(cur)
                    conn.commit()
                    self._ready = True
                cur.execute(statement, params)
                result = cur.fetchall() if fetch else None
            conn.commit()
            return result
        except psycopg2.Error as exc:
            raise database_error(what, exc) from exc
        finally:
            conn.close()

    @staticmethod
    def _create(cur) -> None:
        serialize_ddl(cur)   # two processes starting at once must not race to create it
        cur.execute(sql.SQL("""CREATE TABLE IF NOT EXISTS {} (
            run_id text PRIMARY KEY, what text, command text, started_at timestamptz NOT NULL,
            host text, pid integer, state text NOT NULL, ended_at timestamptz, exit_code integer, error text,
            months text[] NOT NULL DEFAULT '{{}}', rows bigint NOT NULL DEFAULT 0, log text,
            tasks jsonb NOT NULL DEFAULT '{{}}', heartbeat_at timestamptz NOT NULL DEFAULT now())""")
                    .format(sql.Identifier(RUNS_TABLE)))

    def start(self, run: RunRecord) -> None:
        self._execute("cannot record the run", sql.SQL(
            "INSERT INTO {} (run_id, what, command, started_at, host, pid, state, log) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)").format(sql.Identifier(RUNS_TABLE)),
            (run.run_id, run.what, run.command, run.started_at, run.host, run.pid, run.state, run.log))

    def heartbeat(self, run_id: str) -> None:
        self._execute("cannot refresh the run's heartbeat", sql.SQL(
            "UPDATE {} SET heartbeat_at = now() WHERE run_id = %s AND state = 'Running'")
            .format(sql.Identifier(RUNS_TABLE)), (run_id,))

    def finish(self, run: RunRecord) -> None:
        self._execute("cannot record the run's end", sql.SQL(
            "UPDATE {} SET what = %s, state = %s, ended_at = %s, exit_code = %s, error = %s, months = %s, "
            "rows = %s, tasks = %s, heartbeat_at = now() WHERE run_id = %s").format(sql.Identifier(RUNS_TABLE)),
            (run.what, run.state, run.ended_at, run.exit_code, run.error, run.months, run.rows, Json(run.tasks),
             run.run_id))

    def mark_crashed(self, heartbeat_seconds: float) -> list[str]:
        """Runs left ``Running`` by a dead process become ``Crashed``; returns their ids."""
        rows = self._execute("cannot read the run history", sql.SQL(
            "SELECT run_id, host, pid, extract(epoch FROM now() - heartbeat_at) FROM {} WHERE state = 'Running'")
            .format(sql.Identifier(RUNS_TABLE)), fetch=True)
        here = socket.gethostname()
        dead = [run_id for run_id, host, pid, silent in rows
                if (host == here and pid != os.getpid() and not pid_alive(pid))
                or silent > STALE_HEARTBEATS * heartbeat_seconds]
        if dead:
            self._execute("cannot record crashed runs", sql.SQL(
                "UPDATE {} SET state = 'Crashed', ended_at = heartbeat_at, error = %s "
                "WHERE run_id = ANY(%s) AND state = 'Running'").format(sql.Identifier(RUNS_TABLE)),
                (CRASH_ERROR, dead))
        return dead

    def list(self, limit: int = 20, failed_only: bool = False) -> list[RunRecord]:
        where = sql.SQL("WHERE state NOT IN ('Completed', 'Running')" if failed_only else "")
        rows = self._execute("cannot read the run history", sql.SQL(
            "SELECT {} FROM {} {} ORDER BY started_at DESC LIMIT %s").format(
            sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)), sql.Identifier(RUNS_TABLE), where),
            (limit,), fetch=True)
        return [RunRecord(**dict(zip(_COLUMNS, row, strict=True))) for row in rows]
