"""The load report: table ``ingest_loads``, one row per table and month (rows, pickups outside the
month, source version and URL, load time), written in the load's own transaction and read
by ``python -m luigi_tasks status``."""
from __future__ import annotations

import datetime as dt

import psycopg2
from psycopg2 import sql
from psycopg2.extras import Json

from luigi_tasks.blocks import SqlAlchemyConnector
from luigi_tasks.pg import database_error

LOAD_REPORT = "ingest_loads"


# What a month's row says beyond its counts: columns added since the first version are added to an
# existing report table in place (ALTER TABLE ... ADD COLUMN IF NOT EXISTS).
_LATER_COLUMNS = (("pickups_without_zone", "bigint"), ("bad_rows", "bigint"), ("unmapped_labels", "jsonb"))


def record_load(conn, table: str, dataset: str, month_value: str, report: dict, rows: int) -> None:
    """Inside the load's transaction: the month's row in the load report (read by the status command)."""
    values = {"table_name": table, "source_month": month_value, "dataset": dataset, "rows": rows,
              "pickups_outside_month": report.get("pickups_outside_month"), "source_version": report.get("version"),
              "source_url": report.get("url"), "pickups_without_zone": report.get("pickups_without_zone"),
              "bad_rows": report.get("bad_rows"), "unmapped_labels": Json(report.get("unmapped_labels") or {})}
    names = sql.SQL(", ").join(map(sql.Identifier, values))
    updates = sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(k)) for k in values
                                 if k not in ("table_name", "source_month"))
    with conn.cursor() as cur:
        cur.execute(sql.SQL("INSERT INTO {} ({}, loaded_at) VALUES ({}, now()) ON CONFLICT (table_name, source_month) "
                            "DO UPDATE SET {}, loaded_at = now()").format(
            sql.Identifier(LOAD_REPORT), names, sql.SQL(", ").join(sql.Placeholder() * len(values)), updates),
            list(values.values()))


def create_report_table(cur) -> None:
    cur.execute(sql.SQL("""CREATE TABLE IF NOT EXISTS {} (
        table_name text, source_month date, dataset text, rows bigint, pickups_outside_month bigint,
        source_version text, source_url text, loaded_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (table_name, source_month))""").format(sql.Identifier(LOAD_REPORT)))
    cur.execute("SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0", (LOAD_REPORT,))
    present = {r[0] for r in cur.fetchall()}
    for name, pg_type in _LATER_COLUMNS:   # altered only when missing: a loader need not own the table
        if name not in present:
            cur.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} " + pg_type)
                        .format(sql.Identifier(LOAD_REPORT), sql.Identifier(name)))


def loaded_months(block: SqlAlchemyConnector, table: str, marker_table: str = "table_updates") -> dict[str, dict]:
    """Each loaded month of ``table`` (``YYYY-MM``) with its row of the report: a month counts only while
    its marker exists, so this agrees with what a run would do (no marker: it would load the month)."""
    conn = block.psycopg2_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s), to_regclass(%s)", (LOAD_REPORT, marker_table))
            report, markers = cur.fetchone()
            if report is None or markers is None:
                return {}
            cur.execute(sql.SQL("""SELECT to_char(r.source_month, 'YYYY-MM'), r.rows, r.pickups_outside_month,
                                          r.loaded_at, r.source_version, r.source_url, r.pickups_without_zone,
                                          r.bad_rows, r.unmapped_labels
                                   FROM {} r WHERE r.table_name = %s AND EXISTS (
                                     SELECT 1 FROM {} m WHERE starts_with(m.update_id, r.dataset || ':' ||
                                       to_char(r.source_month, 'YYYY-MM') || ':' || r.table_name || ':'))
                                   ORDER BY r.source_month""")
                        .format(sql.Identifier(LOAD_REPORT), sql.Identifier(marker_table)), (table,))
            return {m: {"month": m, "rows": rows, "pickups_outside_month": outside,
                        "loaded_at": loaded.isoformat(timespec="seconds"), "source_version": version,
                        "source_url": url, "pickups_without_zone": without_zone, "bad_rows": bad,
                        "unmapped_labels": unmapped or {}}
                    for m, rows, outside, loaded, version, url, without_zone, bad, unmapped in cur.fetchall()}
    except psycopg2.Error as exc:
        raise database_error(f"cannot read {LOAD_REPORT}", exc) from exc
    finally:
        conn.close()


def loaded_rows(block: SqlAlchemyConnector, months: list[tuple[str, dt.date]]) -> int:
    """Rows of the given (table, month) loads, from the report."""
    conn = block.psycopg2_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT coalesce(sum(rows), 0) FROM {} WHERE (table_name, source_month) IN ({})")
                        .format(sql.Identifier(LOAD_REPORT), sql.SQL(", ").join(sql.SQL("(%s, %s)") for _ in months)),
                        [value for pair in months for value in pair])
            return int(cur.fetchone()[0])
    except psycopg2.Error as exc:
        raise database_error(f"cannot read {LOAD_REPORT}", exc) from exc
    finally:
        conn.close()


def rows_loaded_since(block: SqlAlchemyConnector, table: str, since) -> int:
    """Rows of ``table``'s months loaded (committed) since ``since``."""
    conn = block.psycopg2_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)", (LOAD_REPORT,))
            if cur.fetchone()[0] is None:
                return 0
            cur.execute(sql.SQL("SELECT coalesce(sum(rows), 0) FROM {} WHERE table_name = %s AND loaded_at >= %s")
                        .format(sql.Identifier(LOAD_REPORT)), (table, since))
            return int(cur.fetchone()[0])
    except psycopg2.Error as exc:
        raise database_error(f"cannot read {LOAD_REPORT}", exc) from exc
    finally:
        conn.close()
