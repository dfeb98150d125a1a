"""Prefect's options, the Luigi way: cache expiry, source-change refresh, log_prints, names,
subflows/backfills, parallel workers and secrets that never show."""
from __future__ import annotations

import json

import pytest
from support import PASSWORD_ROLE, ROLE_PASSWORD, age_file, markers, month_counts, ran, serve

pytestmark = pytest.mark.slow   # real processes end to end


def test_expired_download_reruns_everything_downstream_without_duplicates(run_luigi, db):
    serve(run_luigi, "2022-01", 2000)
    assert run_luigi("--month", "2022-01").returncode == 0
    raw = run_luigi.data_dir / "raw/yellow/yellow_tripdata_2022-01.parquet"

    fresh = run_luigi("--month", "2022-01", "--DownloadMonth-cache-expiration", "7 days")
    assert fresh.returncode == 0 and ran(fresh) == set()           # a day-old file is still good

    age_file(raw, 8)
    proc = run_luigi("--month", "2022-01", "--DownloadMonth-cache-expiration", "7 days")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {"Download yellow 2022-01", "Convert yellow 2022-01", "Load yellow 2022-01"} <= ran(proc)
    assert month_counts(db, run_luigi.table) == {"2022-01": 2000}
    assert len(markers(db, run_luigi.table)) == 1


def test_expired_marker_reloads_only_the_load(run_luigi, db):
    serve(run_luigi, "2022-01", 1000)
    assert run_luigi("--month", "2022-01").returncode == 0
    with db.cursor() as cur:
        cur.execute("UPDATE table_updates SET inserted = inserted - interval '3 days' WHERE target_table = %s",
                    (run_luigi.table,))
    proc = run_luigi("--month", "2022-01", "--LoadMonth-cache-expiration", "2 days")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ran(proc) == {"Load yellow 2022-01", "Ingest yellow 2022-01"}
    assert month_counts(db, run_luigi.table) == {"2022-01": 1000}
    assert len(markers(db, run_luigi.table)) == 1


def test_refresh_reingests_only_when_the_source_changed(run_luigi, db):
    serve(run_luigi, "2022-01", 1000, seed=1)
    assert run_luigi("--month", "2022-01").returncode == 0
    unchanged = run_luigi("--month", "2022-01", "--refresh")
    assert unchanged.returncode == 0 and ran(unchanged) == set()

    serve(run_luigi, "2022-01", 1200, seed=2)                    # the TLC re-publishes the month
    assert ran(run_luigi("--month", "2022-01")) == set()             # without --refresh nobody asks
    proc = run_luigi("--month", "2022-01", "--refresh")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "re-ingesting" in proc.stderr and "Download yellow 2022-01" in ran(proc)
    assert month_counts(db, run_luigi.table) == {"2022-01": 1200}
    raw = run_luigi.data_dir / "raw/yellow/yellow_tripdata_2022-01.parquet"
    version = json.loads(raw.with_name(raw.name + ".source.json").read_text())["version"]
    assert markers(db, run_luigi.table) == [f"yellow:2022-01:{run_luigi.table}:{version}"]
    again = run_luigi("--month", "2022-01", "--refresh")
    assert again.returncode == 0 and ran(again) == set()


def test_cleaned_up_files_do_not_cause_a_reload(run_luigi, db):
    serve(run_luigi, "2022-01", 800)
    assert run_luigi("--month", "2022-01").returncode == 0
    for path in run_luigi.data_dir.rglob("*"):
        if path.is_file():
            path.unlink()
    proc = run_luigi("--month", "2022-01")
    assert proc.returncode == 0 and ran(proc) == set()


def test_load_report_is_printed_to_the_log_with_the_task_id(run_luigi):
    serve(run_luigi, "2022-01", 3000)
    proc = run_luigi("--month", "2022-01")
    lines = [ln for ln in proc.stderr.splitlines() if "with a pickup outside the month" in ln]
    assert len(lines) == 1
    assert "[LoadMonth_" in lines[0] and "loaded 3,000 rows" in lines[0]
    assert lines[0][:4].isdigit()                     # timestamped, one line per event
    assert "running   Download yellow 2022-01" in proc.stderr   # human task names in the log
    assert proc.stdout == ""                           # nothing printed past the log


def test_log_prints_can_be_switched_off(run_luigi):
    serve(run_luigi, "2022-01", 500)
    proc = run_luigi("--month", "2022-01", "--pipeline-log-prints", "false")
    assert proc.returncode == 0
    assert "with a pickup outside the month" in proc.stdout
    assert "with a pickup outside the month" not in proc.stderr


def test_ingest_range_with_parallel_workers(run_luigi, db):
    for i, month in enumerate(("2022-01", "2022-02", "2022-03")):
        serve(run_luigi, month, 700 + i, seed=i)
    proc = run_luigi("--start", "2022-01", "--stop", "2022-04", "--workers", "3", task="IngestRange")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert month_counts(db, run_luigi.table) == {"2022-01": 700, "2022-02": 701, "2022-03": 702}


def test_range_monthly_catches_up_missing_months(run_luigi, db):
    for i, month in enumerate(("2022-01", "2022-02", "2022-03")):
        serve(run_luigi, month, 300 + i, seed=i)
    assert run_luigi("--month", "2022-02").returncode == 0
    proc = run_luigi("--of", "IngestMonth", "--param-name", "month", "--start", "2022-01", "--stop", "2022-04",
                     "--months-back", "1000", task="RangeMonthly")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert month_counts(db, run_luigi.table) == {"2022-01": 300, "2022-02": 301, "2022-03": 302}
    assert "Ingest yellow 2022-02" not in ran(proc)     # already there: not loaded again


def test_password_never_appears(run_luigi, db, tmp_path):
    serve(run_luigi, "2022-01", 400)
    ok = run_luigi("--month", "2022-01", extra_env={"PGUSER": PASSWORD_ROLE, "PGPASSWORD": ROLE_PASSWORD})
    assert ok.returncode == 0, ok.stderr[-2000:]
    bad = run_luigi("--month", "2022-02", extra_env={"PGUSER": PASSWORD_ROLE, "PGPASSWORD": ROLE_PASSWORD + "x"})
    assert bad.returncode != 0
    assert "password authentication failed" in bad.stderr
    files = "".join(p.read_text(errors="replace") for p in run_luigi.data_dir.rglob("*.json"))
    for text in (ok.stdout, ok.stderr, bad.stdout, bad.stderr, files):
        assert ROLE_PASSWORD not in text
