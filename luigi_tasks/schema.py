"""Table layouts: how each TLC Parquet column maps onto a PostgreSQL column.

One ``Column`` per table column.  ``sources`` lists every spelling the TLC has
used for it (matched case-insensitively, so ``Airport_fee`` and ``airport_fee``
land in the same column).  A column the file does not have is loaded as NULL:
older months lack the newer fee columns.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class Column:
    name: str          # PostgreSQL name: lower-case snake_case, never needs quoting
    pg_type: str
    arrow_type: pa.DataType
    sources: tuple[str, ...]


def _col(name: str, pg_type: str, *sources: str) -> Column:
    arrow = {
        "integer": pa.int32(),
        "bigint": pa.int64(),
        "double precision": pa.float64(),
        "timestamp": pa.timestamp("us"),
        "text": pa.string(),
        "date": pa.date32(),
    }[pg_type]
    return Column(name, pg_type, arrow, tuple(sources) or (name,))


SOURCE_MONTH = _col("source_month", "date")

YELLOW = (
    _col("vendor_id", "integer", "VendorID"),
    _col("tpep_pickup_datetime", "timestamp"),
    _col("tpep_dropoff_datetime", "timestamp"),
    # passenger_count and RatecodeID arrive as double (nulls) or int64 by year; the
    # values are whole numbers, so an integer column absorbs both spellings.
    _col("passenger_count", "integer"),
    _col("trip_distance", "double precision"),
    _col("ratecode_id", "integer", "RatecodeID"),
    _col("store_and_fwd_flag", "text"),
    _col("pu_location_id", "integer", "PULocationID"),
    _col("do_location_id", "integer", "DOLocationID"),
    _col("payment_type", "integer"),
    _col("fare_amount", "double precision"),
    _col("extra", "double precision"),
    _col("mta_tax", "double precision"),
    _col("tip_amount", "double precision"),
    _col("tolls_amount", "double precision"),
    _col("improvement_surcharge", "double precision"),
    _col("total_amount", "double precision"),
    _col("congestion_surcharge", "double precision"),
    _col("airport_fee", "double precision", "airport_fee", "Airport_fee"),
    _col("cbd_congestion_fee", "double precision"),
)

TABLES: dict[str, tuple[Column, ...]] = {
    "yellow": YELLOW + (SOURCE_MONTH,),
}

DATASETS: tuple[str, ...] = tuple(TABLES)

# Columns a file must have to be loadable at all: without them a row means nothing.
REQUIRED: dict[str, tuple[str, ...]] = {
    "yellow": ("tpep_pickup_datetime", "tpep_dropoff_datetime", "pu_location_id", "do_location_id"),
}


# The column that says when a trip happened; trips outside the file's month are counted in the load report.
PICKUP: dict[str, str] = {"yellow": "tpep_pickup_datetime"}


def columns(dataset: str) -> tuple[Column, ...]:
    """The table's columns, in table order (``source_month`` last)."""
    return TABLES[dataset]


def create_table_sql(dataset: str, qualified_name: str) -> str:
    cols = ",\n  ".join(f"{c.name} {c.pg_type}" for c in columns(dataset))
    return f"CREATE TABLE IF NOT EXISTS {qualified_name} (\n  {cols}\n)"
