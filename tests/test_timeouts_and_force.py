"""Timeouts that stop work for real (a stalled source, a slow transfer, a lock held elsewhere) and leave
nothing behind; --force rebuilds a month that is complete."""
from __future__ import annotations

import subprocess

import psycopg2
import pytest
from support import DATABASE, RC_TASK_FAILED, ROOT, markers, month_counts, ran, serve

pytestmark = pytest.mark.slow   # real processes end to end


def _leftovers(run, db) -> list[str]:
    files = [str(p) for p in run.data_dir.rglob("*") if p.is_file() and (".tmp-" in p.name or "2022-03" in p.name)]
    with db.cursor() as cur:
        cur.execute("SELECT relname FROM pg_class WHERE relname LIKE %s", (f"{run.table}%_load",))
        return files + [r[0] for r in cur.fetchall()]


def test_a_stalled_source_fails_as_transient_within_its_stall_timeout(run_luigi, http_root, db):
    serve(run_luigi, "2022-03", 50_000)                  # more than the 64 KiB the stalling source sends
    url = f"{http_root.url}/stall/{run_luigi.serve_dir.name}/{{dataset}}_tripdata_{{month}}.parquet"
    proc = run_luigi("--month", "2022-03", "--DownloadMonth-stall-timeout", "1 second", "--DownloadMonth-retries", "1",
                     "--DownloadMonth-retry-delays", "0.1", url=url)
    assert proc.returncode == RC_TASK_FAILED, proc.stderr[-2000:]
    assert "retrying Download yellow 2022-03: attempt 2 of 2 in 0.1 s: download stalled: no data for 1 s" \
        in proc.stderr
    assert proc.stderr.count("download stalled") >= 2 and _leftovers(run_luigi, db) == []


def test_a_download_past_its_timeout_is_stopped_and_removed(run_luigi, http_root, db):
    serve(run_luigi, "2022-03", 200_000)                 # several MB at 64 KiB per 0.05 s: longer than 1 s
    url = f"{http_root.url}/trickle/0.05/{run_luigi.serve_dir.name}/{{dataset}}_tripdata_{{month}}.parquet"
    proc = run_luigi("--month", "2022-03", "--DownloadMonth-timeout", "1 second", "--DownloadMonth-retries", "0",
                     url=url)
    assert proc.returncode == RC_TASK_FAILED, proc.stderr[-2000:]
    assert "Download yellow 2022-03 timed out after 1 s" in proc.stderr
    assert _leftovers(run_luigi, db) == [] and month_counts(db, run_luigi.table) == {}


def test_a_load_blocked_by_a_lock_ends_within_its_lock_timeout_and_leaves_nothing(run_luigi, pg, db):
    serve(run_luigi, "2022-02", 2000)
    assert run_luigi("--month", "2022-02").returncode == 0          # the table exists
    serve(run_luigi, "2022-03", 3000)
    holder = psycopg2.connect(**pg.connect_params(DATABASE))       # another session holds the table
    try:
        with holder.cursor() as cur:
            cur.execute(f"LOCK TABLE {run_luigi.table} IN ACCESS EXCLUSIVE MODE")
        proc = subprocess.run(run_luigi.command("--month", "2022-03", "--LoadMonth-lock-timeout", "1 second",
                                                "--LoadMonth-retries", "1", "--LoadMonth-retry-delays", "0.1"),
                              cwd=ROOT, env=run_luigi.env, capture_output=True, text=True, timeout=120)
    finally:
        holder.rollback()
        holder.close()
    assert proc.returncode == RC_TASK_FAILED, proc.stderr[-2000:]
    assert "retrying Load yellow 2022-03: attempt 2 of 2" in proc.stderr
    assert "canceling statement due to lock timeout" in proc.stderr
    with db.cursor() as cur:
        cur.execute("SELECT relname FROM pg_class WHERE relname LIKE %s", (f"{run_luigi.table}%_load",))
        assert cur.fetchall() == []                                 # no stage table left behind
    assert month_counts(db, run_luigi.table) == {"2022-02": 2000}
    again = run_luigi("--month", "2022-03")                        # the lock gone, the month loads
    assert again.returncode == 0 and month_counts(db, run_luigi.table) == {"2022-02": 2000, "2022-03": 3000}


def _loaded_at(db, table: str, month: str):
    with db.cursor() as cur:
        cur.execute("SELECT loaded_at, rows FROM ingest_loads WHERE table_name = %s AND source_month = %s",
                    (table, f"{month}-01"))
        return cur.fetchone()


def test_force_rebuilds_a_complete_month_from_a_fresh_download(run_luigi, db):
    serve(run_luigi, "2022-04", 1500)
    assert run_luigi("--month", "2022-04").returncode == 0
    first, rows = _loaded_at(db, run_luigi.table, "2022-04")
    raw = run_luigi.data_dir / "raw/yellow/yellow_tripdata_2022-04.parquet"
    raw_mtime = raw.stat().st_mtime_ns
    unchanged = run_luigi("--month", "2022-04")
    assert ran(unchanged) == set()                                   # nothing expired, nothing changed
    forced = run_luigi("--month", "2022-04", "--force")
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert {"Download yellow 2022-04", "Convert yellow 2022-04", "Load yellow 2022-04"} <= ran(forced)
    second, rows_again = _loaded_at(db, run_luigi.table, "2022-04")
    assert second > first and rows_again == rows == 1500              # reloaded, not duplicated
    assert raw.stat().st_mtime_ns > raw_mtime                       # a fresh download
    assert month_counts(db, run_luigi.table) == {"2022-04": 1500} and len(markers(db, run_luigi.table)) == 1
    assert ran(run_luigi("--month", "2022-04")) == set()             # and then it is complete again


def test_force_on_a_range_rebuilds_every_month(run_luigi, db):
    for i, month in enumerate(("2022-05", "2022-06")):
        serve(run_luigi, month, 300 + i, seed=i)
    assert run_luigi("--start", "2022-05", "--stop", "2022-07", task="IngestRange").returncode == 0
    before = {m: _loaded_at(db, run_luigi.table, m)[0] for m in ("2022-05", "2022-06")}
    forced = run_luigi("--start", "2022-05", "--stop", "2022-07", "--force", task="IngestRange")
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert {"Load yellow 2022-05", "Load yellow 2022-06"} <= ran(forced)
    assert all(_loaded_at(db, run_luigi.table, m)[0] > before[m] for m in before)
    assert month_counts(db, run_luigi.table) == {"2022-05": 300, "2022-06": 301}


def test_zero_expiry_means_always_rebuilt_and_an_unknown_unit_is_refused(run_luigi, db):
    serve(run_luigi, "2022-07", 400)
    assert run_luigi("--month", "2022-07").returncode == 0
    first = _loaded_at(db, run_luigi.table, "2022-07")[0]
    again = run_luigi("--month", "2022-07", "--LoadMonth-cache-expiration", "0 seconds")
    assert again.returncode == 0 and "Load yellow 2022-07" in ran(again)
    assert _loaded_at(db, run_luigi.table, "2022-07")[0] > first
    bad = run_luigi("--month", "2022-07", "--LoadMonth-cache-expiration", "500ms")
    assert bad.returncode != 0 and "invalid cache_expiration '500ms'" in bad.stderr
