"""Parquet-to-CSV normalisation: column mapping, drift between years, clear errors."""
from __future__ import annotations

import csv
import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from luigi_tasks import schema
from luigi_tasks.errors import IngestError
from luigi_tasks.parquet_csv import parquet_to_csv
from luigi_tasks.synth import write_month

NAMES = [c.name for c in schema.columns("yellow")]


def convert(tmp_path, src, month="2022-01", **kw):
    out = tmp_path / "out.csv"
    rows = parquet_to_csv(src, out, "yellow", dt.date.fromisoformat(month + "-01"), **kw)
    return rows, list(csv.reader(out.open()))


@pytest.mark.parametrize("month", ["2019-01", "2021-06", "2022-01", "2023-01", "2024-06", "2025-01"])
def test_every_years_layout_converts_to_the_same_columns(tmp_path, month):
    src = write_month(tmp_path / "in.parquet", month, rows=3000, seed=5)
    rows, lines = convert(tmp_path, src, month)
    assert rows == len(lines) == 3000
    assert all(len(line) == len(NAMES) for line in lines)
    assert {line[NAMES.index("source_month")] for line in lines} == {f"{month}-01"}
    fee_present = pq.read_schema(src).get_field_index("Airport_fee") >= 0 or \
        pq.read_schema(src).get_field_index("airport_fee") >= 0
    fees = [line[NAMES.index("airport_fee")] for line in lines]
    assert any(fees) == fee_present   # absent in 2019 files: empty = NULL in COPY csv
    cbd = [line[NAMES.index("cbd_congestion_fee")] for line in lines]
    assert any(cbd) == (month >= "2025")
    passengers = {line[NAMES.index("passenger_count")] for line in lines}
    assert passengers <= {"", "0", "1", "2", "3", "4", "5", "6"}   # double 1.0 -> integer 1


def test_nanosecond_timestamps_are_absorbed(tmp_path):
    src = write_month(tmp_path / "in.parquet", "2022-01", rows=100)
    t = pq.read_table(src)
    i = t.schema.get_field_index("tpep_pickup_datetime")
    t = t.set_column(i, "tpep_pickup_datetime", t.column(i).cast(pa.timestamp("ns")))
    pq.write_table(t, tmp_path / "ns.parquet")
    rows, lines = convert(tmp_path, tmp_path / "ns.parquet")
    assert rows == 100 and lines[0][1].startswith("2022-")


def _rewrite(tmp_path, mutate):
    t = mutate(pq.read_table(write_month(tmp_path / "in.parquet", "2022-01", rows=50)))
    pq.write_table(t, tmp_path / "bad.parquet")
    return tmp_path / "bad.parquet"


def test_unknown_column_is_named_unless_dropped(tmp_path):
    src = _rewrite(tmp_path, lambda t: t.append_column("surprise_fee", pa.array([1.0] * 50)))
    with pytest.raises(IngestError, match=r"yellow 2022-01 .*unknown column surprise_fee \(type double\)"):
        convert(tmp_path, src)
    rows, lines = convert(tmp_path, src, drop_unknown=True)
    assert rows == 50 and len(lines[0]) == len(NAMES)


def test_missing_required_column_is_named(tmp_path):
    src = _rewrite(tmp_path, lambda t: t.drop_columns(["PULocationID"]))
    with pytest.raises(IngestError, match="required column PULocationID is missing"):
        convert(tmp_path, src)


def test_incompatible_type_is_named(tmp_path):
    src = _rewrite(tmp_path, lambda t: t.set_column(
        t.schema.get_field_index("trip_distance"), "trip_distance", pa.array([b"far"] * 50, pa.binary())))
    with pytest.raises(IngestError, match=r"column trip_distance has type binary, expected .*double precision"):
        convert(tmp_path, src)


def test_text_where_a_number_belongs_fails_with_the_row_unless_skipped(tmp_path):
    values = [str(i / 10) for i in range(50)]
    values[37] = "far"
    src = _rewrite(tmp_path, lambda t: t.set_column(
        t.schema.get_field_index("trip_distance"), "trip_distance", pa.array(values)))
    with pytest.raises(IngestError, match=r"row 38: column trip_distance has 'far', not a number"):
        convert(tmp_path, src)
    rows, lines = convert(tmp_path, src, bad_rows="skip")
    assert rows == len(lines) == 49
    assert sorted(float(line[NAMES.index("trip_distance")]) for line in lines) == \
        sorted(float(v) for v in values if v != "far")


def test_fractional_value_in_integer_column_fails_instead_of_rounding(tmp_path):
    src = _rewrite(tmp_path, lambda t: t.set_column(
        t.schema.get_field_index("passenger_count"), "passenger_count", pa.array([1.5] * 50)))
    with pytest.raises(IngestError, match="column passenger_count cannot be stored as int32"):
        convert(tmp_path, src)
    assert not (tmp_path / "out.csv").exists()
    assert not list(tmp_path.glob(".out.csv.tmp-*"))
