"""Generator of TLC-shaped Parquet months, for tests and the benchmark.

The files carry the TLC's own column names and Arrow types for the month asked
for (the schema drifts by year, see ``yellow_schema``), realistic value
distributions, the nulls of the real files (a few percent of rows with no
passenger/rate metadata) and their oddities: zero-distance trips, negative
amounts, absurd distances, pickups outside the file's month.  Output is
deterministic for a given seed and is written row group by row group, so a
10-million-row month costs no more memory than a small one.

    python -m luigi_tasks.synth --month 2022-01 --rows 100000 out.parquet
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

CHUNK_ROWS = 250_000

_MONEY = ("fare_amount", "extra", "mta_tax", "tip_amount", "tolls_amount",
          "improvement_surcharge", "total_amount", "congestion_surcharge")


_LEGACY_2009 = [("vendor_name", pa.string()), ("Trip_Pickup_DateTime", pa.string()),
                ("Trip_Dropoff_DateTime", pa.string()), ("Passenger_Count", pa.int64()),
                ("Trip_Distance", pa.float64()),
                ("Start_Lon", pa.float64()), ("Start_Lat", pa.float64()), ("Rate_Code", pa.float64()),
                ("store_and_forward", pa.float64()), ("End_Lon", pa.float64()), ("End_Lat", pa.float64()),
                ("Payment_Type", pa.string()), ("Fare_Amt", pa.float64()), ("surcharge", pa.float64()),
                ("mta_tax", pa.float64()), ("Tip_Amt", pa.float64()), ("Tolls_Amt", pa.float64()),
                ("Total_Amt", pa.float64())]
_LEGACY_2010 = [("vendor_id", pa.string()), ("pickup_datetime", pa.string()), ("dropoff_datetime", pa.string()),
                ("passenger_count", pa.int64()), ("trip_distance", pa.float64()), ("pickup_longitude", pa.float64()),
                ("pickup_latitude", pa.float64()), ("rate_code", pa.float64()), ("store_and_fwd_flag", pa.float64()),
                ("dropoff_longitude", pa.float64()), ("dropoff_latitude", pa.float64()), ("payment_type", pa.string()),
                ("fare_amount", pa.float64()), ("surcharge", pa.float64()), ("mta_tax", pa.float64()),
                ("tip_amount", pa.float64()), ("tolls_amount", pa.float64()), ("total_amount", pa.float64())]


def yellow_schema(month: str) -> pa.Schema:
    """The Arrow schema pyarrow reports for a real yellow file of ``month`` (YYYY-MM): the 2009 and 2010
    layouts (coordinates, text timestamps and labels), then the zone layout with its drift by year."""
    year = int(month[:4])
    if year <= 2010:
        return pa.schema(_LEGACY_2009 if year == 2009 else _LEGACY_2010)
    id_type = pa.int32() if year >= 2024 else pa.int64()
    meta_type = pa.int64() if year >= 2024 else pa.float64()
    fields = [
        ("VendorID", id_type),
        ("tpep_pickup_datetime", pa.timestamp("us")),
        ("tpep_dropoff_datetime", pa.timestamp("us")),
        ("passenger_count", meta_type),
        ("trip_distance", pa.float64()),
        ("RatecodeID", meta_type),
        ("store_and_fwd_flag", pa.string()),
        ("PULocationID", id_type),
        ("DOLocationID", id_type),
        ("payment_type", pa.int64()),
        *[(name, pa.float64()) for name in _MONEY],
    ]
    if year >= 2021:
        fields.append(("Airport_fee" if year >= 2023 else "airport_fee", pa.float64()))
    if year >= 2025:
        fields.append(("cbd_congestion_fee", pa.float64()))
    return pa.schema(fields)


def green_schema(month: str) -> pa.Schema:
    """The Arrow schema of a real green file of ``month``: ehail_fee is never filled (typed null in most
    months), improvement_surcharge appears in 2015 and congestion_surcharge in 2019."""
    year = int(month[:4])
    id_type = pa.int32() if year >= 2024 else pa.int64()
    meta_type = pa.int64() if year >= 2024 else pa.float64()
    money = [n for n in ("fare_amount", "extra", "mta_tax", "tip_amount", "tolls_amount", "ehail_fee",
                         "improvement_surcharge", "total_amount") if year >= 2015 or n != "improvement_surcharge"]
    fields = [("VendorID", id_type), ("lpep_pickup_datetime", pa.timestamp("us")),
              ("lpep_dropoff_datetime", pa.timestamp("us")), ("store_and_fwd_flag", pa.string()),
              ("RatecodeID", meta_type), ("PULocationID", id_type), ("DOLocationID", id_type),
              ("passenger_count", meta_type), ("trip_distance", pa.float64()),
              *[(n, pa.null() if n == "ehail_fee" else pa.float64()) for n in money],
              ("payment_type", meta_type), ("trip_type", meta_type)]
    if year >= 2019:
        fields.append(("congestion_surcharge", pa.float64()))
    if year >= 2025:
        fields.append(("cbd_congestion_fee", pa.float64()))
    return pa.schema(fields)


def fhv_schema(month: str) -> pa.Schema:
    """The Arrow schema of a real fhv file: note dropOff_datetime and PUlocationID (lower-case l). The early
    files (2015-2016) record only the pickup: their drop-off, DOlocationID, SR_Flag and affiliated base
    columns have no value and are typed null; SR_Flag (shared rides) is filled from 2018."""
    year = int(month[:4])
    early, unshared = year <= 2016, year <= 2017
    return pa.schema([("dispatching_base_num", pa.string()), ("pickup_datetime", pa.timestamp("us")),
                      ("dropOff_datetime", pa.null() if early else pa.timestamp("us")),
                      ("PUlocationID", pa.float64()), ("DOlocationID", pa.null() if early else pa.float64()),
                      ("SR_Flag", pa.null() if unshared else pa.float64()),
                      ("Affiliated_base_number", pa.null() if early else pa.string())])


def fhvhv_schema(month: str) -> pa.Schema:
    """The Arrow schema of a real fhvhv (Uber/Lyft) file of ``month``."""
    year = int(month[:4])
    id_type = pa.int32() if year >= 2024 else pa.int64()
    ts = pa.timestamp("us")
    fields = [("hvfhs_license_num", pa.string()), ("dispatching_base_num", pa.string()),
              ("originating_base_num", pa.string()), ("request_datetime", ts), ("on_scene_datetime", ts),
              ("pickup_datetime", ts), ("dropoff_datetime", ts), ("PULocationID", id_type),
              ("DOLocationID", id_type), ("trip_miles", pa.float64()), ("trip_time", pa.int64()),
              *[(n, pa.float64()) for n in ("base_passenger_fare", "tolls", "bcf", "sales_tax",
                                             "congestion_surcharge", "airport_fee", "tips", "driver_pay")],
              *[(n, pa.string()) for n in ("shared_request_flag", "shared_match_flag", "access_a_ride_flag",
                                            "wav_request_flag", "wav_match_flag")]]
    if year >= 2025:
        fields.append(("cbd_congestion_fee", pa.float64()))
    return pa.schema(fields)


SCHEMAS = {"yellow": yellow_schema, "green": green_schema, "fhv": fhv_schema, "fhvhv": fhvhv_schema}


def _generic_chunk(rng: np.random.Generator, n: int, month: str, schema: pa.Schema) -> pa.RecordBatch:
    """Green and for-hire files: the same realism rules as yellow, driven by the column names."""
    pickup = _pickups(rng, n, month)
    duration = rng.lognormal(6.6, 0.7, n).clip(0, 86_000).astype("int64")
    wait = rng.integers(60, 900, n)
    no_meta = rng.random(n) < 0.04
    zones = _zone_weights()
    values, masks = {}, {}
    for field in schema:
        name = field.name.lower()
        if "pickup" in name:
            v = pickup
        elif "dropoff" in name:
            v = pickup + (duration * 1_000_000).astype("timedelta64[us]")
        elif name == "request_datetime":
            v = pickup - (wait * 1_000_000).astype("timedelta64[us]")
        elif name == "on_scene_datetime":
            v, masks[field.name] = pickup - (wait // 3 * 1_000_000).astype("timedelta64[us]"), rng.random(n) < .3
        elif name.endswith("locationid"):
            v = rng.choice(np.arange(1, 266), n, p=zones)
            if pa.types.is_floating(field.type):
                masks[field.name] = rng.random(n) < 0.2   # fhv files often lack the zones
        elif name == "vendorid":
            v = rng.choice([1, 2], n, p=[.2, .8])
        elif name in ("ratecodeid", "passenger_count", "payment_type", "trip_type"):
            v = {"ratecodeid": rng.choice([1, 5, 2], n, p=[.9, .08, .02]),
                 "passenger_count": rng.choice([1, 2, 3, 5], n, p=[.8, .12, .05, .03]),
                 "payment_type": rng.choice([1, 2, 3], n, p=[.6, .38, .02]),
                 "trip_type": rng.choice([1, 2], n, p=[.97, .03])}[name]
            masks[field.name] = no_meta
        elif name in ("trip_distance", "trip_miles"):
            v = np.round(rng.lognormal(0.8, 0.9, n), 2)
            v[rng.random(n) < 0.015] = 0.0
        elif name == "trip_time":
            v = duration
        elif name == "ehail_fee":
            v, masks[field.name] = np.zeros(n), np.ones(n, bool)   # always null in the real files
        elif name == "sr_flag":
            v, masks[field.name] = np.ones(n), rng.random(n) < 0.9
        elif name == "hvfhs_license_num":
            v = rng.choice(np.array(["HV0003", "HV0005"], dtype=object), n, p=[.72, .28])
        elif name.endswith("base_num") or name == "affiliated_base_number":
            v = rng.choice(np.array([f"B0{b}" for b in (2510, 2764, 2875, 3404, 2395)], dtype=object), n)
            if name != "dispatching_base_num":
                masks[field.name] = rng.random(n) < 0.1
        elif name.endswith("_flag"):
            v = np.where(rng.random(n) < 0.05, "Y", "N").astype(object)
        else:   # money
            v = np.round(rng.lognormal(2.3, 0.7, n), 2)
            v[rng.random(n) < 0.007] *= -1
            if name in ("congestion_surcharge", "airport_fee", "cbd_congestion_fee"):
                masks[field.name] = no_meta
        values[field.name] = v
    arrays = [pa.nulls(n) if pa.types.is_null(f.type) else pa.array(values[f.name], mask=masks.get(f.name)).cast(f.type)
              for f in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _month_bounds(month: str) -> tuple[np.datetime64, np.datetime64]:
    start = np.datetime64(f"{month}-01T00:00:00", "us")
    stop = (start.astype("datetime64[M]") + 1).astype("datetime64[us]")
    return start, stop


def _pickups(rng: np.random.Generator, n: int, month: str) -> np.ndarray:
    start, stop = _month_bounds(month)
    span_s = int((stop - start) / np.timedelta64(1, "s"))
    # Whole seconds, as the meters record them.
    pickup = start + (rng.integers(0, span_s, n) * 1_000_000).astype("timedelta64[us]")
    # Real files hold a few pickups outside their month (late uploads, clock errors), before it (up to a
    # year and more) and after it (days to weeks).
    stray = rng.random(n) < 0.0005
    late = stray & (rng.random(n) < 0.3)
    early = stray & ~late
    pickup[early] -= rng.integers(1, 400, early.sum()).astype("timedelta64[D]")
    pickup[late] = stop + rng.integers(0, 40 * 86400, late.sum()).astype("timedelta64[s]")
    return pickup


def _yellow_chunk(rng: np.random.Generator, n: int, month: str, schema: pa.Schema) -> pa.RecordBatch:
    pickup = _pickups(rng, n, month)
    duration_s = np.clip(rng.lognormal(6.5, 0.7, n), 0, 86_000).astype("int64")
    dropoff = pickup + (duration_s * 1_000_000).astype("timedelta64[us]")

    distance = np.round(rng.lognormal(0.55, 0.9, n), 2)
    distance[rng.random(n) < 0.015] = 0.0
    absurd = rng.random(n) < 0.00005
    distance[absurd] = np.round(rng.uniform(1000, 200_000, absurd.sum()), 2)

    no_meta = rng.random(n) < 0.04   # rows the TLC publishes without passenger/rate metadata
    passengers = rng.choice([0, 1, 2, 3, 4, 5, 6], n, p=[.02, .72, .14, .05, .03, .02, .02]).astype("float64")
    ratecode = rng.choice([1, 2, 3, 4, 5, 6, 99], n, p=[.955, .025, .004, .002, .01, .0005, .0035]).astype("float64")
    payment = rng.choice([1, 2, 3, 4, 5], n, p=[.74, .23, .015, .01, .005])
    payment[no_meta] = 0
    flag = np.where(rng.random(n) < 0.01, "Y", "N").astype(object)
    zones = rng.choice(np.arange(1, 266), n, p=_zone_weights())
    dropzones = rng.choice(np.arange(1, 266), n, p=_zone_weights())

    fare = np.round(2.5 + distance.clip(0, 100) * 2.5 + duration_s / 60 * 0.5, 2)
    refund = rng.random(n) < 0.007
    fare[refund] *= -1
    sign = np.where(refund, -1.0, 1.0)
    extra = rng.choice([0.0, 0.5, 1.0, 2.5], n) * sign
    mta = 0.5 * sign
    tip = np.where(payment == 1, np.round(fare.clip(0) * rng.uniform(0.1, 0.3, n), 2), 0.0)
    tolls = np.where(rng.random(n) < 0.05, 6.55, 0.0) * sign
    improvement = 0.3 * sign
    congestion = np.where(rng.random(n) < 0.85, 2.5, 0.0) * sign
    airport = np.where(np.isin(zones, (132, 138)), 1.25, 0.0) * sign
    total = np.round(fare + extra + mta + tip + tolls + improvement + congestion + airport, 2)

    values = {
        "VendorID": rng.choice([1, 2, 6], n, p=[.3, .69, .01]),
        "tpep_pickup_datetime": pickup,
        "tpep_dropoff_datetime": dropoff,
        "passenger_count": passengers,
        "trip_distance": distance,
        "RatecodeID": ratecode,
        "store_and_fwd_flag": flag,
        "PULocationID": zones,
        "DOLocationID": dropzones,
        "payment_type": payment,
        "fare_amount": fare, "extra": extra, "mta_tax": mta, "tip_amount": tip,
        "tolls_amount": tolls, "improvement_surcharge": improvement, "total_amount": total,
        "congestion_surcharge": congestion,
        "airport_fee": airport, "Airport_fee": airport,
        "cbd_congestion_fee": np.where(rng.random(n) < 0.3, 0.75, 0.0),
    }
    nullable = {"passenger_count", "RatecodeID", "store_and_fwd_flag", "congestion_surcharge",
                "airport_fee", "Airport_fee", "cbd_congestion_fee"}
    arrays = [pa.array(values[f.name], mask=no_meta if f.name in nullable else None).cast(f.type)
              for f in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


# Where 2009-2010 trips start and end: busy places (lon, lat) and how often; a trip lands near one.
_HOTSPOTS = np.array([(-73.9855, 40.7580), (-74.0090, 40.7130), (-73.9595, 40.7736), (-73.9754, 40.7870),
                      (-74.0000, 40.7460), (-73.9900, 40.7300), (-73.7781, 40.6413), (-73.8740, 40.7769),
                      (-73.9570, 40.7081), (-73.9442, 40.8081)])
_HOTSPOT_WEIGHTS = np.array([.22, .14, .14, .12, .12, .12, .04, .04, .03, .03])
_PAYMENT_2009 = (["CASH", "Cash", "CREDIT", "Credit", "No Charge", "Dispute", "Other"],
                 [.36, .25, .2, .16, .02, .0095, .0005])   # "Other": a label nobody has seen, rarely
_PAYMENT_2010 = (["CAS", "Cas", "CRD", "Cre", "CSH", "NOC", "No ", "DIS", "UNK"],
                 [.4, .15, .25, .1, .05, .02, .01, .01, .01])


def _coordinates(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 points around busy places, with the real files' oddities: 0/0 (no fix, ~1.5%) and a few
    absurd values (a dropped minus sign, a misplaced decimal point)."""
    spot = _HOTSPOTS[rng.choice(len(_HOTSPOTS), n, p=_HOTSPOT_WEIGHTS)]
    lon = np.round(spot[:, 0] + rng.normal(0, 0.006, n), 6)
    lat = np.round(spot[:, 1] + rng.normal(0, 0.005, n), 6)
    zero = rng.random(n) < 0.015
    lon[zero], lat[zero] = 0.0, 0.0
    odd = rng.random(n) < 0.0005
    lon[odd] = -lon[odd]
    lat[odd & (rng.random(n) < 0.5)] *= 10
    return lon, lat


def _legacy_yellow_chunk(rng: np.random.Generator, n: int, month: str, schema: pa.Schema) -> pa.RecordBatch:
    """A 2009 or 2010 yellow batch: text timestamps, coordinates, payment and vendor labels."""
    year = int(month[:4])
    pickup = _pickups(rng, n, month)
    duration_s = np.clip(rng.lognormal(6.4, 0.7, n), 0, 86_000).astype("int64")
    dropoff = pickup + (duration_s * 1_000_000).astype("timedelta64[us]")
    distance = np.round(rng.lognormal(0.6, 0.9, n), 2)
    distance[rng.random(n) < 0.01] = 0.0
    fare = np.round(2.5 + distance.clip(0, 100) * 2.0, 1)
    surcharge = rng.choice([0.0, 0.5, 1.0], n, p=[.6, .3, .1])
    early = year == 2009 and int(month[5:]) < 3          # mta_tax began in March 2009
    mta = np.full(n, 0.5)
    labels, weights = _PAYMENT_2009 if year == 2009 else _PAYMENT_2010
    payment = rng.choice(np.array(labels, dtype=object), n, p=weights)
    credit = np.isin(payment, [lab for lab in labels if lab.upper().startswith("CR")])
    tip = np.where(credit, np.round(fare * rng.uniform(0.1, 0.25, n), 2), 0.0)
    tolls = np.where(rng.random(n) < 0.03, 4.15, 0.0)
    total = np.round(fare + surcharge + np.where(early, 0.0, mta) + tip + tolls, 2)
    plon, plat = _coordinates(rng, n)
    dlon, dlat = _coordinates(rng, n)
    text = lambda t: np.datetime_as_string(t.astype("datetime64[s]"), unit="s").astype(object)  # noqa: E731
    vendors = rng.choice(np.array(["VTS", "CMT", "DDS"], dtype=object), n, p=[.5, .45, .05])
    sparse = rng.random(n) < 0.95                          # Rate_Code and store_and_forward: mostly empty
    values = {
        "vendor": vendors, "pickup": np.char.replace(text(pickup).astype(str), "T", " ").astype(object),
        "dropoff": np.char.replace(text(dropoff).astype(str), "T", " ").astype(object),
        "passengers": rng.choice([1, 2, 3, 4, 5, 6], n, p=[.7, .15, .05, .03, .05, .02]),
        "distance": distance, "plon": plon, "plat": plat, "rate": np.ones(n),
        "flag": rng.choice([0.0, 1.0], n, p=[.98, .02]), "dlon": dlon, "dlat": dlat, "payment": payment,
        "fare": fare, "surcharge": surcharge, "mta": mta, "tip": tip, "tolls": tolls, "total": total,
    }
    masks = {"rate": sparse, "flag": sparse, "mta": np.full(n, early)}
    keys = list(values)
    arrays = [pa.array(values[k], mask=masks.get(k)).cast(f.type) for k, f in zip(keys, schema, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


_ZONE_WEIGHTS: np.ndarray | None = None


def _zone_weights() -> np.ndarray:
    global _ZONE_WEIGHTS
    if _ZONE_WEIGHTS is None:
        w = np.ones(265)
        for busy in (132, 138, 161, 162, 236, 237, 186, 230, 170, 142):
            w[busy - 1] = 40.0
        w[263:] = 5.0   # 264/265: Unknown / NV
        _ZONE_WEIGHTS = w / w.sum()
    return _ZONE_WEIGHTS


def write_month(path: str | Path, month: str = "2022-01", rows: int = 10_000, seed: int = 0,
                dataset: str = "yellow", row_group_rows: int = 122_880, index_column: bool = False,
                null_columns: tuple[str, ...] = (), bad_timestamps: int = 0) -> Path:
    """Write a TLC-shaped ``dataset`` file for ``month`` with exactly ``rows`` rows.

    Oddities of some published files, on request: ``index_column`` adds pandas' ``__index_level_0__``;
    ``null_columns`` are typed null (a month with no value in them); ``bad_timestamps`` pickup times of a
    2009-2010 file are unparseable text.
    """
    if dataset not in SCHEMAS:
        raise ValueError(f"synth: unknown dataset {dataset!r}; known: {', '.join(SCHEMAS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = SCHEMAS[dataset](month)
    schema = pa.schema([(f.name, pa.null() if f.name in null_columns else f.type) for f in base]
                       + ([("__index_level_0__", pa.int64())] if index_column else []))
    legacy = dataset == "yellow" and month < "2011"
    chunk = _legacy_yellow_chunk if legacy else _yellow_chunk if dataset == "yellow" else _generic_chunk
    rng = np.random.default_rng(seed)
    bad_rows = set(rng.choice(rows, min(bad_timestamps, rows), replace=False).tolist()) if bad_timestamps else set()
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        done = 0
        while done < rows:
            n = min(CHUNK_ROWS, rows - done)
            batch = chunk(rng, n, month, base)
            columns = {f.name: batch.column(i) for i, f in enumerate(base)}
            for name in null_columns:
                columns[name] = pa.nulls(n)
            if bad_rows and legacy:
                pickup_name = base.names[1]
                local = [r - done for r in bad_rows if done <= r < done + n]
                if local:
                    values = columns[pickup_name].to_pylist()
                    for r in local:
                        values[r] = f"{month}-32 25:61:00"      # a day and a time that do not exist
                    columns[pickup_name] = pa.array(values, pa.string())
            if index_column:
                columns["__index_level_0__"] = pa.array(np.arange(done, done + n))
            writer.write_batch(pa.RecordBatch.from_arrays([columns[f.name] for f in schema], schema=schema),
                               row_group_size=row_group_rows)
            done += n
    return path


# The public 10,000-row sample renamed the TLC columns; this maps them back.
_SAMPLE_NAMES = {
    "vendor_id": "VendorID", "pickup_datetime": "tpep_pickup_datetime",
    "dropoff_datetime": "tpep_dropoff_datetime", "rate_code_id": "RatecodeID",
    "pickup_location_id": "PULocationID", "dropoff_location_id": "DOLocationID",
}


def sample_to_parquet(csv_path: str | Path, out: str | Path, month: str = "2019-01") -> Path:
    """Rebuild the snake_case sample CSV as a file in the TLC's own layout for ``month``."""
    table = pacsv.read_csv(csv_path)
    table = table.rename_columns([_SAMPLE_NAMES.get(c, c) for c in table.column_names])
    schema = yellow_schema(month)
    table = table.select(schema.names).cast(schema)
    pq.write_table(table, out)
    return Path(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write a synthetic TLC-shaped Parquet month.")
    ap.add_argument("out")
    ap.add_argument("--dataset", default="yellow", choices=sorted(SCHEMAS))
    ap.add_argument("--month", default="2022-01", help="YYYY-MM (the schema follows that year)")
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    write_month(args.out, args.month, args.rows, args.seed, args.dataset)
    print(f"wrote {args.rows} rows to {args.out}")


if __name__ == "__main__":
    main()
