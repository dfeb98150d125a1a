"""The generator writes what the TLC publishes: names, Arrow types, nulls and oddities."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from luigi_tasks.synth import write_month, yellow_schema

# The 2022-01 yellow file as pyarrow reads it (../shared/reference/tlc_schema_facts.md).
YELLOW_2022_01 = [
    ("VendorID", "int64"), ("tpep_pickup_datetime", "timestamp[us]"), ("tpep_dropoff_datetime", "timestamp[us]"),
    ("passenger_count", "double"), ("trip_distance", "double"), ("RatecodeID", "double"),
    ("store_and_fwd_flag", "string"), ("PULocationID", "int64"), ("DOLocationID", "int64"),
    ("payment_type", "int64"), ("fare_amount", "double"), ("extra", "double"), ("mta_tax", "double"),
    ("tip_amount", "double"), ("tolls_amount", "double"), ("improvement_surcharge", "double"),
    ("total_amount", "double"), ("congestion_surcharge", "double"), ("airport_fee", "double"),
]


def test_2022_01_schema_is_exact(tmp_path):
    path = write_month(tmp_path / "y.parquet", "2022-01", rows=1000)
    assert [(f.name, str(f.type)) for f in pq.read_schema(path)] == YELLOW_2022_01


def test_schema_drift_by_year():
    assert "airport_fee" not in yellow_schema("2019-01").names
    assert "Airport_fee" in yellow_schema("2023-01").names
    s2024 = yellow_schema("2024-06")
    assert s2024.field("VendorID").type == pa.int32() and s2024.field("passenger_count").type == pa.int64()
    assert "cbd_congestion_fee" in yellow_schema("2025-01").names


def test_rows_exact_deterministic_and_streamed(tmp_path):
    a = write_month(tmp_path / "a.parquet", "2022-01", rows=600_001, seed=3)
    b = write_month(tmp_path / "b.parquet", "2022-01", rows=600_001, seed=3)
    meta = pq.ParquetFile(a).metadata
    assert meta.num_rows == 600_001 and meta.num_row_groups > 1
    assert pq.read_table(a).equals(pq.read_table(b))
    assert not pq.read_table(a).equals(pq.read_table(write_month(tmp_path / "c.parquet", "2022-01", 600_001, 4)))


def test_realistic_nulls_and_oddities(tmp_path):
    t = pq.read_table(write_month(tmp_path / "y.parquet", "2022-01", rows=200_000, seed=1))
    n = t.num_rows
    nulls = t["passenger_count"].null_count
    assert 0.02 * n < nulls < 0.06 * n
    assert t["RatecodeID"].null_count == nulls   # null together, as in the real files
    assert pc.sum(pc.equal(t["trip_distance"], 0)).as_py() > 0
    assert pc.sum(pc.less(t["fare_amount"], 0)).as_py() > 0
    assert pc.sum(pc.greater(t["trip_distance"], 1000)).as_py() >= 0
    before = pc.sum(pc.less(t["tpep_pickup_datetime"], pa.scalar(pa.scalar(0, pa.int64()).as_py(),
                                                                   pa.timestamp("us")))).as_py()
    assert before == 0
    outside = pc.sum(pc.less(t["tpep_pickup_datetime"],
                             pc.strptime(pa.scalar("2022-01-01"), "%Y-%m-%d", "us"))).as_py()
    assert outside > 0
    zones = pc.unique(t["PULocationID"])
    assert pc.min(zones).as_py() >= 1 and pc.max(zones).as_py() <= 265
    assert pc.sum(pc.less(t["tpep_dropoff_datetime"], t["tpep_pickup_datetime"])).as_py() == 0
