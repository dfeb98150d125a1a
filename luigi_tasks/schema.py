"""Table layouts: how each TLC Parquet column maps onto a PostgreSQL column.

One ``Column`` per table column.  ``sources`` lists every spelling the TLC has
used for it (matched case-insensitively, so ``Airport_fee`` and ``airport_fee``
land in the same column).  A column the file does not have is loaded as NULL:
older months lack the newer fee columns.
"""
from __future__ import annotations

from dataclasses import dataclass

# Arrow type of each PostgreSQL type, by name: pyarrow is imported only when a conversion
# asks for one, so the command line (blocks, status, ...) starts without it.
_ARROW_TYPES = {"integer": "int32", "bigint": "int64", "double precision": "float64",
                "timestamp": "timestamp", "text": "string", "date": "date32"}


@dataclass(frozen=True)
class Column:
    name: str          # PostgreSQL name: lower-case snake_case, never needs quoting
    pg_type: str
    sources: tuple[str, ...]
    labels: str | None = None               # text in the file -> a code (luigi_tasks.labels), e.g. payment
    flag: bool = False                      # a number in the file (1/0) -> 'Y'/'N'
    geo: tuple[str, str] | None = None      # no column in the file: the zone of these (lon, lat) columns

    @property
    def arrow_type(self):
        import pyarrow as pa

        kind = _ARROW_TYPES[self.pg_type]
        return pa.timestamp("us") if kind == "timestamp" else getattr(pa, kind)()


def _col(name: str, pg_type: str, *sources: str, labels: str | None = None, flag: bool = False,
         geo: tuple[str, str] | None = None) -> Column:
    if pg_type not in _ARROW_TYPES:
        raise ValueError(f"no Arrow type for {pg_type}")
    return Column(name, pg_type, tuple(sources) or (name,), labels, flag, geo)


SOURCE_MONTH = _col("source_month", "date")

# Yellow from 2011 on names zones; 2009 (vendor_name, Trip_Pickup_DateTime, Start_Lon, ..., Total_Amt) and
# 2010 (vendor_id as text, pickup_datetime, pickup_longitude, rate_code, surcharge, ...) name coordinates,
# write timestamps as text and payments and vendors as labels: every spelling lands in the same column.
YELLOW = (
    _col("vendor_id", "integer", "VendorID", "vendor_id", "vendor_name", labels="vendor"),
    _col("tpep_pickup_datetime", "timestamp", "tpep_pickup_datetime", "Trip_Pickup_DateTime", "pickup_datetime"),
    _col("tpep_dropoff_datetime", "timestamp", "tpep_dropoff_datetime", "Trip_Dropoff_DateTime", "dropoff_datetime"),
    # passenger_count and RatecodeID arrive as double (nulls) or int64 by year; the
    # values are whole numbers, so an integer column absorbs both spellings.
    _col("passenger_count", "integer"),
    _col("trip_distance", "double precision"),
    _col("ratecode_id", "integer", "RatecodeID", "Rate_Code", "rate_code"),
    _col("store_and_fwd_flag", "text", "store_and_fwd_flag", "store_and_forward", flag=True),
    _col("pu_location_id", "integer", "PULocationID", geo=("pickup_longitude", "pickup_latitude")),
    _col("do_location_id", "integer", "DOLocationID", geo=("dropoff_longitude", "dropoff_latitude")),
    _col("payment_type", "integer", labels="payment"),
    _col("fare_amount", "double precision", "fare_amount", "Fare_Amt"),
    _col("extra", "double precision", "extra", "surcharge"),
    _col("mta_tax", "double precision"),
    _col("tip_amount", "double precision", "tip_amount", "Tip_Amt"),
    _col("tolls_amount", "double precision", "tolls_amount", "Tolls_Amt"),
    _col("improvement_surcharge", "double precision"),
    _col("total_amount", "double precision", "total_amount", "Total_Amt"),
    _col("congestion_surcharge", "double precision"),
    _col("airport_fee", "double precision", "airport_fee", "Airport_fee"),
    _col("cbd_congestion_fee", "double precision"),
    # 2009-2010 only (NULL later): where the trip started and ended, and the vendor as the file names it
    # (DDS, Digital Dispatch Systems, has no modern code: its vendor_id is NULL and its name is here).
    _col("pickup_longitude", "double precision", "pickup_longitude", "Start_Lon"),
    _col("pickup_latitude", "double precision", "pickup_latitude", "Start_Lat"),
    _col("dropoff_longitude", "double precision", "dropoff_longitude", "End_Lon"),
    _col("dropoff_latitude", "double precision", "dropoff_latitude", "End_Lat"),
    _col("vendor_name", "text", "vendor_name", "vendor_id"),
)

GREEN = (
    _col("vendor_id", "integer", "VendorID"),
    _col("lpep_pickup_datetime", "timestamp"),
    _col("lpep_dropoff_datetime", "timestamp"),
    _col("store_and_fwd_flag", "text"),
    _col("ratecode_id", "integer", "RatecodeID"),
    _col("pu_location_id", "integer", "PULocationID"),
    _col("do_location_id", "integer", "DOLocationID"),
    _col("passenger_count", "integer"),
    _col("trip_distance", "double precision"),
    _col("fare_amount", "double precision"),
    _col("extra", "double precision"),
    _col("mta_tax", "double precision"),
    _col("tip_amount", "double precision"),
    _col("tolls_amount", "double precision"),
    _col("ehail_fee", "double precision"),
    _col("improvement_surcharge", "double precision"),
    _col("total_amount", "double precision"),
    _col("payment_type", "integer"),
    _col("trip_type", "integer"),
    _col("congestion_surcharge", "double precision"),
    _col("cbd_congestion_fee", "double precision"),
)

FHV = (
    _col("dispatching_base_num", "text"),
    _col("pickup_datetime", "timestamp"),
    _col("dropoff_datetime", "timestamp", "dropOff_datetime"),
    # Location ids arrive as double (with nulls); the values are whole zone numbers.
    _col("pu_location_id", "integer", "PUlocationID"),
    _col("do_location_id", "integer", "DOlocationID"),
    _col("sr_flag", "integer", "SR_Flag"),
    _col("affiliated_base_number", "text", "Affiliated_base_number"),
)

FHVHV = (
    _col("hvfhs_license_num", "text"),
    _col("dispatching_base_num", "text"),
    _col("originating_base_num", "text"),
    _col("request_datetime", "timestamp"),
    _col("on_scene_datetime", "timestamp"),
    _col("pickup_datetime", "timestamp"),
    _col("dropoff_datetime", "timestamp"),
    _col("pu_location_id", "integer", "PULocationID"),
    _col("do_location_id", "integer", "DOLocationID"),
    _col("trip_miles", "double precision"),
    _col("trip_time", "bigint"),
    _col("base_passenger_fare", "double precision"),
    _col("tolls", "double precision"),
    _col("bcf", "double precision"),
    _col("sales_tax", "double precision"),
    _col("congestion_surcharge", "double precision"),
    _col("airport_fee", "double precision", "airport_fee", "Airport_fee"),
    _col("tips", "double precision"),
    _col("driver_pay", "double precision"),
    _col("shared_request_flag", "text"),
    _col("shared_match_flag", "text"),
    _col("access_a_ride_flag", "text"),
    _col("wav_request_flag", "text"),
    _col("wav_match_flag", "text"),
    _col("cbd_congestion_fee", "double precision"),
)

TABLES: dict[str, tuple[Column, ...]] = {
    "yellow": YELLOW + (SOURCE_MONTH,),
    "green": GREEN + (SOURCE_MONTH,),
    "fhv": FHV + (SOURCE_MONTH,),
    "fhvhv": FHVHV + (SOURCE_MONTH,),
}

DATASETS: tuple[str, ...] = tuple(TABLES)

# The column that says when a trip happened: required, and trips outside the file's month are
# counted in the load report.
PICKUP: dict[str, str] = {"yellow": "tpep_pickup_datetime", "green": "lpep_pickup_datetime",
                          "fhv": "pickup_datetime", "fhvhv": "pickup_datetime"}

# Columns a file must have to be loadable at all: without them a row means nothing (a zone column is
# there when its coordinates are).
REQUIRED: dict[str, tuple[str, ...]] = {
    "yellow": ("tpep_pickup_datetime", "tpep_dropoff_datetime", "pu_location_id", "do_location_id"),
    "green": ("lpep_pickup_datetime", "lpep_dropoff_datetime", "pu_location_id", "do_location_id"),
    "fhv": ("dispatching_base_num", "pickup_datetime"),
    "fhvhv": ("hvfhs_license_num", "pickup_datetime", "dropoff_datetime"),
}

# pandas' index columns, left in some published files by their conversion: not data, ignored.
IGNORED_PREFIX = "__index_level_"

# The first month each dataset was published (the TLC's own trip-record page).
FIRST_MONTH: dict[str, str] = {"yellow": "2009-01", "green": "2013-08", "fhv": "2015-01", "fhvhv": "2019-02"}


def columns(dataset: str) -> tuple[Column, ...]:
    """The table's columns, in table order (``source_month`` last)."""
    return TABLES[dataset]


