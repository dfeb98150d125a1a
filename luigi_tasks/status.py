"""``python -m luigi_tasks status``: which months are loaded (rows, load time, source version) and which are missing.

    python -m luigi_tasks status [--dataset yellow] [--start 2022-01] [--stop 2023-01] [--json]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json

import luigi
import psycopg2
from psycopg2 import sql

from luigi_tasks.blocks import SqlAlchemyConnector, first_line
from luigi_tasks.errors import IngestError, cli_main
from luigi_tasks.load import LOAD_REPORT, LoadMonth, parse_table_name
from luigi_tasks.schema import DATASETS
from luigi_tasks.tasks import DatasetParameter


class cron(luigi.Config):  # noqa: N801 - section name in luigi.cfg
    lag_months = luigi.IntParameter(default=2, description="the TLC publishes a month about this many months late")
    catch_up_months = luigi.IntParameter(default=12, description="how many published months cron keeps loaded")
    since = luigi.Parameter(default="", description="YYYY-MM: keep every month since this one (overrides catch_up)")
    dataset = DatasetParameter(default="yellow")


def add_months(month: dt.date, n: int) -> dt.date:
    index = month.year * 12 + month.month - 1 + n
    return dt.date(index // 12, index % 12 + 1, 1)


def latest_published(today: dt.date | None = None, lag: int | None = None) -> dt.date:
    today = today or dt.date.today()
    return add_months(today.replace(day=1), -(cron().lag_months if lag is None else lag))


def default_window(lag: int | None = None, catch_up: int | None = None,
                   since: str | None = None) -> tuple[dt.date, dt.date]:
    """[start, stop) of the months cron keeps loaded ([cron] settings unless given)."""
    cfg = cron()
    stop = add_months(latest_published(lag=cfg.lag_months if lag is None else lag), 1)
    since = cfg.since if since is None else since
    if since:
        try:
            start = dt.date.fromisoformat(since + "-01")
        except ValueError:
            raise IngestError(f"invalid [cron] since {since!r}: expected YYYY-MM") from None
    else:
        start = add_months(stop, -(cfg.catch_up_months if catch_up is None else catch_up))
    return start, stop


def month_range(start: dt.date, stop: dt.date) -> list[dt.date]:
    months, month = [], start
    while month < stop:
        months.append(month)
        month = add_months(month, 1)
    return months


def loaded_months(block: SqlAlchemyConnector, table: str) -> dict[str, dict]:
    conn = block.psycopg2_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)", (LOAD_REPORT,))
            if cur.fetchone()[0] is None:
                return {}
            cur.execute(sql.SQL("""SELECT to_char(source_month, 'YYYY-MM'), rows, pickups_outside_month,
                                          loaded_at, source_version, source_url
                                   FROM {} WHERE table_name = %s ORDER BY source_month""")
                        .format(sql.Identifier(LOAD_REPORT)), (table,))
            return {m: {"month": m, "rows": rows, "pickups_outside_month": outside,
                        "loaded_at": loaded.isoformat(timespec="seconds"), "source_version": version,
                        "source_url": url}
                    for m, rows, outside, loaded, version, url in cur.fetchall()}
    except psycopg2.Error as exc:
        raise IngestError(f"status: cannot read {LOAD_REPORT}: {first_line(exc)}") from None
    finally:
        conn.close()


def _parse_month(text: str) -> dt.date:
    try:
        return dt.datetime.strptime(text, "%Y-%m").date()
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid month {text!r}: expected YYYY-MM") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m luigi_tasks status", description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=DATASETS, default="yellow")
    ap.add_argument("--block", help="connection block (default: [LoadMonth] block)")
    ap.add_argument("--table", help="table (default: [LoadMonth] table or {dataset}_taxi_trips)")
    ap.add_argument("--start", type=_parse_month, help="first month to check (default: cron's window)")
    ap.add_argument("--stop", type=_parse_month, help="month after the last to check (default: next to publish)")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    args = ap.parse_args(argv)
    return cli_main(lambda: _show(args))


def _show(args: argparse.Namespace) -> int:
    task = LoadMonth(dataset=args.dataset, month=dt.date.today().replace(day=1), **{
        k: v for k, v in (("block", args.block), ("table", args.table)) if v})
    table = task.table_name
    parse_table_name(table)
    loaded = loaded_months(task.connector(), table)
    start, stop = default_window()
    if loaded:
        start = min(start, dt.date.fromisoformat(min(loaded) + "-01"))
    start, stop = args.start or start, args.stop or stop
    missing = [f"{m:%Y-%m}" for m in month_range(start, stop) if f"{m:%Y-%m}" not in loaded]
    if args.json:
        print(json.dumps({"table": table, "dataset": args.dataset, "start": f"{start:%Y-%m}",
                          "stop": f"{stop:%Y-%m}", "loaded": list(loaded.values()), "missing": missing}, indent=1))
        return 0
    print(f"{table} ({args.dataset}): {len(loaded)} month(s) loaded, {sum(r['rows'] for r in loaded.values()):,} rows")
    if loaded:
        print(f"{'month':<8} {'rows':>12} {'outside month':>14}  {'loaded at':<19}  version")
        for r in loaded.values():
            print(f"{r['month']:<8} {r['rows']:>12,} {r['pickups_outside_month'] or 0:>14,}  "
                  f"{r['loaded_at'][:19]:<19}  {r['source_version'] or '-'}")
    print(f"missing in {start:%Y-%m}..{add_months(stop, -1):%Y-%m}: {', '.join(missing) if missing else 'none'}")
    return 0
