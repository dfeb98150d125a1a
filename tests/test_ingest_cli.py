"""IngestMonth end to end through the real ``luigi`` command line."""
from __future__ import annotations

import json

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from support import RC_BAD_ARGS, RC_MISSING_DATA, RC_TASK_FAILED, SAMPLE_2019_01, markers, month_counts, serve

from luigi_tasks.synth import sample_to_parquet

pytestmark = pytest.mark.slow   # real processes end to end


def delete_marker(db, prefix: str) -> None:
    with db.cursor() as cur:
        cur.execute("DELETE FROM table_updates WHERE starts_with(update_id, %s)", (prefix,))
        assert cur.rowcount == 1


def test_month_end_to_end(run_luigi, db):
    src = serve(run_luigi, "2022-01", 5000)
    proc = run_luigi("--month", "2022-01")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert month_counts(db, run_luigi.table) == {"2022-01": 5000}

    expected = pq.read_table(src)
    with db.cursor() as cur:
        cur.execute(f"""SELECT count(passenger_count), round(sum(total_amount)::numeric, 2),
                               min(tpep_pickup_datetime), count(*) FILTER (WHERE airport_fee IS NULL),
                               count(cbd_congestion_fee)
                        FROM {run_luigi.table}""")
        non_null_passengers, total, first_pickup, null_fees, cbd = cur.fetchone()
    assert non_null_passengers == expected["passenger_count"].length() - expected["passenger_count"].null_count
    assert float(total) == pytest.approx(pc.sum(expected["total_amount"]).as_py(), abs=0.01)
    assert first_pickup == pc.min(expected["tpep_pickup_datetime"]).as_py()
    assert null_fees == expected["airport_fee"].null_count > 0
    assert cbd == 0   # a 2022 file has no cbd_congestion_fee: the column is NULL
    raw = run_luigi.data_dir / "raw/yellow/yellow_tripdata_2022-01.parquet"
    version = json.loads(raw.with_name(raw.name + ".source.json").read_text())["version"]
    assert markers(db, run_luigi.table) == [f"yellow:2022-01:{run_luigi.table}:{version}"]
    assert raw.read_bytes() == src.read_bytes()
    assert (run_luigi.data_dir / "csv/yellow/yellow_tripdata_2022-01.csv").exists()

    assert "Worker Worker(" not in proc.stderr                # a log line says what happened to which task, once
    assert "running   Download yellow 2022-01" in proc.stderr

    again = run_luigi("--month", "2022-01")
    assert again.returncode == 0
    assert "complete ones were encountered" in again.stderr
    assert " ran successfully" not in again.stderr
    assert month_counts(db, run_luigi.table) == {"2022-01": 5000}


def test_two_months_side_by_side(run_luigi, db):
    serve(run_luigi, "2022-01", 3000, seed=1)
    serve(run_luigi, "2022-02", 2000, seed=2)
    for month in ("2022-01", "2022-02"):
        assert run_luigi("--month", month).returncode == 0
    assert month_counts(db, run_luigi.table) == {"2022-01": 3000, "2022-02": 2000}
    assert len(markers(db, run_luigi.table)) == 2


def test_rerun_after_marker_deleted_replaces_the_month(run_luigi, db):
    serve(run_luigi, "2022-01", 3000, seed=1)
    serve(run_luigi, "2022-02", 1000, seed=2)
    assert run_luigi("--month", "2022-01").returncode == 0
    assert run_luigi("--month", "2022-02").returncode == 0
    delete_marker(db, f"yellow:2022-01:{run_luigi.table}:")
    assert run_luigi("--month", "2022-01").returncode == 0
    assert month_counts(db, run_luigi.table) == {"2022-01": 3000, "2022-02": 1000}

    # A corrected file re-published by the source replaces the month's rows, never adds to them.
    delete_marker(db, f"yellow:2022-01:{run_luigi.table}:")
    for sub in ("raw", "csv"):
        next((run_luigi.data_dir / sub / "yellow").glob("*2022-01*")).unlink()
    serve(run_luigi, "2022-01", 2500, seed=7)
    assert run_luigi("--month", "2022-01").returncode == 0
    assert month_counts(db, run_luigi.table) == {"2022-01": 2500, "2022-02": 1000}


@pytest.mark.parametrize("body, message", [
    (b"<!DOCTYPE html><html><head><title>Access Denied</title></head><body>denied</body></html>",
     "returned an HTML page"),
    (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code></Error>',
     "returned an XML page"),
])
def test_error_page_saved_as_parquet_fails_cleanly(run_luigi, db, body, message):
    (run_luigi.serve_dir / "yellow_tripdata_2022-03.parquet").write_bytes(body)
    proc = run_luigi("--month", "2022-03")
    assert proc.returncode == RC_TASK_FAILED
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr[proc.stderr.find("Traceback") - 500:][:1500]
    assert not any(run_luigi.data_dir.rglob("*")) or not list(run_luigi.data_dir.rglob("*.parquet*"))
    assert not list(run_luigi.data_dir.rglob("*tmp*"))
    assert month_counts(db, run_luigi.table) == {}
    assert markers(db, run_luigi.table) == []


def test_missing_month_404_is_missing_data(run_luigi, db):
    proc = run_luigi("--month", "2022-04")
    assert proc.returncode == RC_MISSING_DATA     # not published (yet): not a failure of ours
    assert "not published:" in proc.stderr and "yellow_tripdata_2022-04.parquet answers HTTP 404" in proc.stderr
    assert not list(run_luigi.data_dir.rglob("*.parquet*"))
    assert month_counts(db, run_luigi.table) == {}


def test_truncated_parquet_fails_cleanly(run_luigi, db):
    full = serve(run_luigi, "2022-05", 2000).read_bytes()
    (run_luigi.serve_dir / "yellow_tripdata_2022-05.parquet").write_bytes(full[: len(full) // 2])
    proc = run_luigi("--month", "2022-05")
    assert proc.returncode == RC_TASK_FAILED
    assert "not a complete Parquet file" in proc.stderr
    assert not list(run_luigi.data_dir.rglob("*.parquet*"))
    assert month_counts(db, run_luigi.table) == {}


@pytest.mark.parametrize("month", ["2022-13", "22-01", "2022-1"])
def test_invalid_month_is_one_clear_line(run_luigi, month):
    proc = run_luigi("--month", month)
    assert proc.returncode == RC_BAD_ARGS
    assert f"error: invalid month '{month}': expected YYYY-MM" in proc.stderr
    assert "Traceback" not in proc.stderr and "Uncaught exception" not in proc.stderr


def test_real_2019_sample_loads_exactly(run_luigi, db):
    sample_to_parquet(SAMPLE_2019_01,
                      run_luigi.serve_dir / "yellow_tripdata_2019-01.parquet")
    proc = run_luigi("--month", "2019-01")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert month_counts(db, run_luigi.table) == {"2019-01": 10000}
    with db.cursor() as cur:
        cur.execute(f"""SELECT count(*) FILTER (WHERE fare_amount < 0), count(*) FILTER (WHERE trip_distance = 0),
                               count(airport_fee), count(*) FILTER (WHERE tpep_pickup_datetime < '2019-01-01')
                        FROM {run_luigi.table}""")
        negative, zero_distance, airport_fees, before_month = cur.fetchone()
    assert negative > 0 and zero_distance > 0   # the real oddities survive the trip
    assert airport_fees == 0                     # no such column in 2019: NULL
    assert before_month >= 0


def test_unknown_block_fails_with_known_names(run_luigi):
    proc = run_luigi("--month", "2022-01", "--LoadMonth-block", "nope")
    assert proc.returncode != 0
    assert "unknown block 'nope'" in proc.stderr and "local-postgres" in proc.stderr


def test_bad_table_name_is_refused(run_luigi):
    proc = run_luigi("--month", "2022-01", "--LoadMonth-table", "x; drop table y")
    assert proc.returncode != 0
    assert "invalid table name 'x; drop table y'" in proc.stderr
