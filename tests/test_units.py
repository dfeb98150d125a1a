"""The fast tier: pure functions and in-process pieces, no subprocess (``pytest -m "not slow"``)."""
from __future__ import annotations

import builtins
import datetime as dt
import logging
import os
import threading
import urllib.error

import luigi
import pyarrow as pa
import pytest

from luigi_tasks import schema
from luigi_tasks.base import MonthTask
from luigi_tasks.blocks import BlockError, _interpolate
from luigi_tasks.config import parse_duration
from luigi_tasks.errors import ConfigError, IngestError, PermanentError, TransientError, first_line
from luigi_tasks.files import atomic_file, read_sidecar, sidecar, write_sidecar
from luigi_tasks.flows import IngestRange
from luigi_tasks.logs import OneLineErrors, prints_to_log
from luigi_tasks.months import add_months, month_range, parse_month, window
from luigi_tasks.parquet_csv import plan_columns
from luigi_tasks.pg_copy import split_ranges
from luigi_tasks.pg_target import parse_table_name
from luigi_tasks.secret import MASK, SecretStr, redact
from luigi_tasks.sources import http_error

D = dt.date


# -- months, ranges, the cron window ------------------------------------------------------------

@pytest.mark.parametrize("text, month", [("2022-01", D(2022, 1, 1)), ("2009-12", D(2009, 12, 1))])
def test_parse_month(text, month):
    assert parse_month(text) == month


@pytest.mark.parametrize("text", ["2022-13", "2022-00", "22-01", "2022-1", "2022-01-01", "", "january"])
def test_parse_month_rejects_with_one_line(text):
    with pytest.raises(ConfigError, match=rf"invalid month '{text}': expected YYYY-MM"):
        parse_month(text)


def test_add_months_crosses_years_both_ways():
    assert add_months(D(2022, 11, 1), 3) == D(2023, 2, 1)
    assert add_months(D(2022, 2, 1), -14) == D(2020, 12, 1)
    assert add_months(D(2022, 2, 1), 0) == D(2022, 2, 1)


def test_month_range_is_half_open():
    assert month_range(D(2022, 11, 1), D(2023, 2, 1)) == [D(2022, 11, 1), D(2022, 12, 1), D(2023, 1, 1)]
    assert month_range(D(2022, 1, 1), D(2022, 1, 1)) == []
    assert len(month_range(D(2009, 1, 1), D(2026, 10, 1))) == 213


def test_ingest_range_requires_every_month_once():
    rng = IngestRange(start=D(2022, 11, 1), stop=D(2023, 3, 1))
    assert [t.month for t in rng.requires()] == month_range(D(2022, 11, 1), D(2023, 3, 1))
    assert str(rng) == "Ingest yellow 2022-11..2023-03"


def test_cron_window_lag_catch_up_and_since():
    today = D(2026, 11, 25)
    assert window(today, 2, 12) == (D(2025, 10, 1), D(2026, 10, 1))   # 12 months up to 2026-09
    assert window(today, 0, 1) == (D(2026, 11, 1), D(2026, 12, 1))
    assert window(today, 2, 12, since=D(2019, 1, 1)) == (D(2019, 1, 1), D(2026, 10, 1))


# -- durations -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [("7 days", 7 * 86400), ("12h", 43200), ("1 week 2 days", 9 * 86400),
                                           ("30 minutes", 1800), ("1.5 hours", 5400)])
def test_parse_duration(text, seconds):
    assert parse_duration(text).total_seconds() == seconds


def test_parse_duration_empty_means_never_and_nonsense_is_refused():
    assert parse_duration("") is None and parse_duration("never") is None
    with pytest.raises(ConfigError, match="invalid cache_expiration 'soon'"):
        parse_duration("soon")


# -- table names, COPY slices --------------------------------------------------------------------

@pytest.mark.parametrize("name, parts, canonical", [
    ("yellow_taxi_trips", ("public", "yellow_taxi_trips"), "yellow_taxi_trips"),
    ("public.yellow_taxi_trips", ("public", "yellow_taxi_trips"), "yellow_taxi_trips"),
    ("tlc.trips", ("tlc", "trips"), "tlc.trips")])
def test_parse_table_name_gives_one_identity(name, parts, canonical):
    from luigi_tasks.pg_target import canonical_table

    assert parse_table_name(name) == parts and canonical_table(name) == canonical


@pytest.mark.parametrize("name", ["x; drop table y", "Yellow", "a.b.c", "", "1abc", "a" * 49, 'x"y'])
def test_parse_table_name_refuses_anything_but_plain_identifiers(name):
    with pytest.raises(ConfigError, match="invalid table name"):
        parse_table_name(name)


def test_split_ranges_cuts_only_at_row_boundaries():
    offsets = [0, 100, 230, 380, 470]                        # where each batch starts
    assert split_ranges(600, offsets, 1) == [(0, 600)]
    assert split_ranges(600, None, 4) == [(0, 600)]          # no offsets: one range
    two = split_ranges(600, offsets, 2)
    assert two == [(0, 230), (230, 600)]                     # 230 is the offset nearest 300
    three = split_ranges(600, offsets, 3)
    assert [a for a, _ in three][1:] == [230, 380] and three[-1][1] == 600
    assert all(b == c for (_, b), (c, _) in zip(three, three[1:], strict=False))   # contiguous


# -- blocks: ${VAR} interpolation, secrets -------------------------------------------------------

def test_interpolation_reads_environment_defaults_and_nested(monkeypatch):
    monkeypatch.setenv("T_HOST", "db.example")
    monkeypatch.delenv("T_PORT", raising=False)
    assert _interpolate("${T_HOST}:${T_PORT:-5433}", "b", "host") == "db.example:5433"
    assert _interpolate({"query": {"app": "${T_APP:-x}"}}, "b", "q") == {"query": {"app": "x"}}
    assert _interpolate(5432, "b", "port") == 5432
    assert _interpolate("${T_EMPTY:-}", "b", "k") == ""


def test_interpolation_names_a_missing_variable(monkeypatch):
    monkeypatch.delenv("T_MISSING", raising=False)
    with pytest.raises(BlockError, match=r"block 'b': environment variable T_MISSING is not set \(needed for 'q.a'\)"):
        _interpolate({"a": "${T_MISSING}"}, "b", "q")


def test_secret_str_never_shows_and_redact_masks_it():
    secret = SecretStr("pa55-word-for-redaction")
    assert "pa55" not in repr(secret) and str(secret) == MASK
    assert redact("FATAL for pa55-word-for-redaction@host") == f"FATAL for {MASK}@host"
    assert str(SecretStr(None)) == "" and redact("nothing here") == "nothing here"


# -- atomic files and sidecars -------------------------------------------------------------------

def test_atomic_file_renames_only_on_success(tmp_path):
    dest = tmp_path / "sub" / "out.csv"
    with atomic_file(dest) as tmp:
        tmp.write_text("done")
        assert not dest.exists()
    assert dest.read_text() == "done"
    with pytest.raises(RuntimeError), atomic_file(dest) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert dest.read_text() == "done" and sorted(p.name for p in dest.parent.iterdir()) == ["out.csv"]


def test_atomic_file_reaps_dead_writers_only(tmp_path):
    from luigi_tasks.files import HOST

    dest = tmp_path / "out.csv"
    dead = tmp_path / f".out.csv.tmp-{HOST}-999999999"        # no such pid on this host
    alive = tmp_path / f".out.csv.tmp-{HOST}-{os.getppid()}"   # a live process's write in progress
    dead.write_text("x")
    alive.write_text("y")
    with atomic_file(dest) as tmp:
        tmp.write_text("z")
    assert not dead.exists() and alive.exists()


def test_sidecar_round_trip(tmp_path):
    data = tmp_path / "f.parquet"
    assert read_sidecar(data) == {}
    write_sidecar(data, {"version": "abc", "rows": 3})               # a sidecar of before 0.2: no "file"
    assert sidecar(data).name == "f.parquet.source.json"
    assert read_sidecar(data) == {"rows": 3, "version": "abc"}
    sidecar(data).write_text("{not json")
    assert read_sidecar(data) == {}


def test_the_sidecar_commits_the_file_it_describes(tmp_path):
    from luigi_tasks.files import SidecarTarget

    data = tmp_path / "f.csv"
    info: dict = {}
    with atomic_file(data, sidecar_info=info) as tmp:
        tmp.write_text("a,b\n")
        info["version"] = "v1"
    assert read_sidecar(data)["version"] == "v1" and SidecarTarget(str(data)).exists()
    data.write_text("another file under the same name\n")           # what a kill between the two leaves
    assert read_sidecar(data) == {} and not SidecarTarget(str(data)).exists()
    with pytest.raises(RuntimeError), atomic_file(tmp_path / "g.csv", sidecar_info={}) as tmp:
        tmp.write_text("x")
        raise RuntimeError("failed before the rename")
    assert not (tmp_path / "g.csv").exists() and not sidecar(tmp_path / "g.csv").exists()


# -- the column plan -----------------------------------------------------------------------------

def _yellow(**changes) -> pa.Schema:
    fields = {"VendorID": pa.int64(), "tpep_pickup_datetime": pa.timestamp("us"),
              "tpep_dropoff_datetime": pa.timestamp("us"), "PULocationID": pa.int64(),
              "DOLocationID": pa.int64(), "Airport_fee": pa.float64(), "passenger_count": pa.float64()}
    fields.update(changes)
    return pa.schema([(k, v) for k, v in fields.items() if v is not None])


def test_plan_maps_spellings_case_insensitively_and_absent_columns_to_null():
    plan = plan_columns(_yellow(), "yellow", "label")
    assert plan["airport_fee"].name == "Airport_fee" and plan["vendor_id"].name == "VendorID"
    assert plan["vendor_id"].kind == "cast" and plan["tpep_pickup_datetime"].kind == "timestamp"
    assert plan["cbd_congestion_fee"].kind == "null" and plan["tip_amount"].name is None
    assert "source_month" not in plan


def test_plan_refuses_missing_required_unknown_and_incompatible_columns():
    with pytest.raises(PermanentError, match="required column PULocationID is missing"):
        plan_columns(_yellow(PULocationID=None), "yellow", "label")
    with pytest.raises(PermanentError, match=r"unknown column surprise \(type string\)"):
        plan_columns(_yellow(surprise=pa.string()), "yellow", "label")
    assert "surprise" not in {s.name for s in plan_columns(_yellow(surprise=pa.string()), "yellow", "x",
                                                           drop_unknown=True).values()}
    with pytest.raises(PermanentError, match="column passenger_count has type binary"):
        plan_columns(_yellow(passenger_count=pa.binary()), "yellow", "label")


def test_plan_for_the_2009_layout_and_file_oddities():
    schema_2009 = pa.schema([("vendor_name", pa.string()), ("Trip_Pickup_DateTime", pa.string()),
                             ("Trip_Dropoff_DateTime", pa.string()), ("Passenger_Count", pa.int64()),
                             ("Start_Lon", pa.float64()), ("Start_Lat", pa.float64()), ("End_Lon", pa.float64()),
                             ("End_Lat", pa.float64()), ("Rate_Code", pa.null()), ("store_and_forward", pa.float64()),
                             ("Payment_Type", pa.string()), ("surcharge", pa.float64()), ("Total_Amt", pa.float64()),
                             ("__index_level_0__", pa.int64())])
    plan = plan_columns(schema_2009, "yellow", "label")
    assert plan["vendor_id"] == plan["vendor_id"].__class__("vendor_name", "labels")
    assert plan["vendor_name"].name == "vendor_name" and plan["vendor_name"].kind == "cast"
    assert plan["tpep_pickup_datetime"].kind == "text_timestamp" and plan["payment_type"].kind == "labels"
    assert plan["pu_location_id"].kind == "zone" and plan["do_location_id"].kind == "zone"
    assert plan["extra"].name == "surcharge" and plan["store_and_fwd_flag"].kind == "flag"
    assert plan["ratecode_id"].kind == "cast"                               # typed null: a month without it


def test_every_table_ends_with_source_month_and_requires_its_own_columns():
    for dataset in schema.DATASETS:
        names = [c.name for c in schema.columns(dataset)]
        assert names[-1] == "source_month" and len(names) == len(set(names))
        assert set(schema.REQUIRED[dataset]) <= set(names) and schema.PICKUP[dataset] in names


# -- errors: kinds, one line -----------------------------------------------------------------------

@pytest.mark.parametrize("code, kind", [(500, TransientError), (503, TransientError), (429, TransientError),
                                        (404, PermanentError), (403, PermanentError), (400, PermanentError)])
def test_http_errors_are_classified(code, kind):
    exc = urllib.error.HTTPError("http://x/f.parquet", code, "Reason", {}, None)
    error = http_error("download failed", exc, "http://x/f.parquet")
    assert type(error) is kind and str(error) == f"download failed: HTTP {code} Reason for http://x/f.parquet"


def test_error_kinds_and_first_line():
    assert TransientError("x").transient and not PermanentError("x").transient
    assert issubclass(ConfigError, PermanentError) and issubclass(PermanentError, IngestError)
    assert first_line(ValueError("\n  FATAL: no\nDETAIL: more\n")) == "FATAL: no"
    assert first_line(ValueError("")) == "ValueError"


def test_one_line_errors_keep_the_message_and_drop_the_traceback():
    try:
        try:
            raise OSError("the cause")
        except OSError as cause:
            raise TransientError("download failed: reset") from cause
    except TransientError:
        record = logging.LogRecord("luigi-interface", logging.ERROR, __file__, 1, "failed %s", ("Download",),
                                   __import__("sys").exc_info())
    assert OneLineErrors().filter(record)
    assert record.getMessage() == "failed Download -- download failed: reset" and record.exc_info is None


def test_log_records_are_scrubbed_of_loaded_secrets():
    SecretStr("scrub-me-Secret-42")
    record = logging.LogRecord("luigi", logging.ERROR, __file__, 1, "url %s", ("pg://u:scrub-me-Secret-42@h",), None)
    OneLineErrors().filter(record)
    assert record.getMessage() == f"url pg://u:{MASK}@h"


# -- month tasks ---------------------------------------------------------------------------------

def test_month_tasks_refuse_months_before_the_dataset_or_in_the_future():
    with pytest.raises(ConfigError, match="the TLC publishes fhvhv trips from 2019-02 on"):
        MonthTask(dataset="fhvhv", month=D(2019, 1, 1))
    with pytest.raises(ConfigError, match="that month has not happened yet"):
        MonthTask(month=add_months(dt.date.today().replace(day=1), 1))
    with pytest.raises(ConfigError, match="unknown dataset 'purple'"):
        MonthTask(dataset="purple", month=D(2022, 1, 1))


def test_human_names():
    task = MonthTask(dataset="green", month=D(2022, 3, 1))
    assert str(task) == "MonthTask green 2022-03"


# -- log_prints ----------------------------------------------------------------------------------

class _Printer(MonthTask):
    def run(self):
        print("hello from", self.ym)


def test_log_prints_routes_print_in_run_and_restores_it(caplog):
    caplog.set_level(logging.INFO, logger="luigi-interface")
    task = _Printer(month=luigi.date_interval.Month(2022, 1).date_a)
    before = builtins.print
    task.run()
    assert builtins.print is before
    assert f"[{task.task_id}] hello from 2022-01" in caplog.text


def test_log_prints_is_per_thread(caplog):
    caplog.set_level(logging.INFO, logger="luigi-interface")
    original = builtins.print
    tasks = [_Printer(month=luigi.date_interval.Month(2022, m).date_a) for m in (1, 2)]
    barrier = threading.Barrier(2)

    def work(task):
        with prints_to_log(task):
            barrier.wait()
            for i in range(50):
                print(f"{task.ym} line {i}")

    threads = [threading.Thread(target=work, args=(t,)) for t in tasks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert builtins.print is original
    for rec in caplog.records:
        if " line " in rec.getMessage():
            task_id, text = rec.getMessage()[1:].split("] ", 1)
            assert text.startswith(next(t.ym for t in tasks if t.task_id == task_id))
    assert sum(" line " in r.getMessage() for r in caplog.records) == 100


def test_range_monthly_is_configured_to_take_every_missing_month():
    import luigi.configuration

    limit = int(luigi.configuration.get_config().get("RangeMonthly", "task_limit"))
    assert limit >= len(month_range(D(2009, 1, 1), dt.date.today()))   # luigi's default (50) drops months


def test_retry_policy_delays_and_what_it_retries():
    from luigi_tasks.retry import RetryPolicy, parse_delays

    listed = RetryPolicy(3, parse_delays("10, 60"))
    assert [listed.delay(n) for n in (1, 2, 3)] == [10, 60, 60]            # the last delay repeats
    doubling = RetryPolicy(3, (5.0,), "exponential")
    assert [doubling.delay(n) for n in (1, 2, 3)] == [5, 10, 20]
    jittered = RetryPolicy(1, (10.0,), jitter=0.2)
    assert all(8 <= jittered.delay(1) <= 12 for _ in range(50))
    assert listed.should_retry(TransientError("reset"), 1) and listed.should_retry(KeyError("bug"), 3)
    assert not listed.should_retry(TransientError("reset"), 4)               # retries used up
    assert not listed.should_retry(PermanentError("html page"), 1)           # never retried
    with pytest.raises(ConfigError, match="invalid retry_delays"):
        parse_delays("soon")
    with pytest.raises(ConfigError, match="invalid retry_backoff"):
        RetryPolicy(1, (1.0,), "linear")


def test_safe_command_hides_secrets():
    from luigi_tasks.runs import safe_command

    SecretStr("hunter2-in-argv")
    cmd = safe_command(["luigi", "--x-password", "p1", "--api-token=t2", "--url", "http://u:hunter2-in-argv@h/"])
    assert "p1" not in cmd and "t2" not in cmd and "hunter2" not in cmd and cmd.startswith("luigi --x-password")
