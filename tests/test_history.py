"""The whole TLC history: 2009-2010 yellow placed in zones from coordinates, and the files' oddities."""
from __future__ import annotations

import csv
import datetime as dt

import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely
from support import DATA, RC_TASK_FAILED, month_counts, serve

from luigi_tasks.months import month_range
from luigi_tasks.synth import write_month
from luigi_tasks.zone_index import ZoneIndex, _to_state_plane, read_zones

SHAPES = DATA / "taxi_zones.zip"


@pytest.fixture(scope="module")
def zones(tmp_path_factory):
    copy = tmp_path_factory.mktemp("zones") / "taxi_zones.zip"
    copy.write_bytes(SHAPES.read_bytes())
    return ZoneIndex.load(copy)


# -- zones from coordinates (in-process: the fast tier) -------------------------------------------------

def test_known_places_land_in_their_zones(zones):
    places = {"JFK airport": (40.6413, -73.7781, 132), "Times Square": (40.7580, -73.9855, 230),
              "LaGuardia": (40.7769, -73.8740, 138), "Newark airport": (40.6895, -74.1745, 1),
              "Central Park": (40.7829, -73.9654, 43)}
    lat = np.array([p[0] for p in places.values()])
    lon = np.array([p[1] for p in places.values()])
    assert zones.zones(lon, lat).tolist() == [p[2] for p in places.values()]


def test_points_with_no_zone(zones):
    lon = np.array([0.0, -74.0200, -73.5, np.nan, 73.9855])     # 0/0, the Hudson, the ocean, missing, a lost sign
    lat = np.array([0.0, 40.7300, 40.2, 40.7, 40.7580])
    assert zones.zones(lon, lat).tolist() == [-1] * 5


def test_the_grid_agrees_exactly_with_shapely_contains_on_random_points(zones):
    rng = np.random.default_rng(2009)
    n = 100_000
    lon, lat = rng.uniform(-74.28, -73.68, n), rng.uniform(40.48, 40.93, n)
    x, y = _to_state_plane(lon, lat)
    polygons, ids = read_zones(SHAPES)
    shapely.prepare(polygons)
    points = shapely.points(x, y)
    expected = np.full(n, -1)
    for polygon, location in zip(polygons, ids, strict=True):     # the plain check, polygon by polygon
        expected[shapely.contains(polygon, points)] = location
    found = zones.zones(lon, lat)
    assert (found == expected).all()
    assert 0.3 < (found >= 0).mean() < 0.9                         # a real mix of inside and outside


@pytest.mark.slow   # classifies the grid twice (about 5 s each)
def test_the_grid_is_kept_beside_the_shapefile_and_rebuilt_when_it_changes(tmp_path):
    copy = tmp_path / "taxi_zones.zip"
    copy.write_bytes(SHAPES.read_bytes())
    ZoneIndex.load(copy)
    cache = tmp_path / f".{copy.name}.grid-250.npz"
    assert cache.exists()
    first = cache.stat().st_mtime_ns
    ZoneIndex.load(copy)
    assert cache.stat().st_mtime_ns == first                       # read, not rebuilt
    cache.write_bytes(b"garbage")
    assert ZoneIndex.load(copy).zones(np.array([-73.9855]), np.array([40.7580])).tolist() == [230]


# -- conversion of the 2009 and 2010 layouts --------------------------------------------------------------

@pytest.mark.parametrize("month", ["2009-01", "2010-06"])
def test_the_pre_2011_layouts_convert_with_zones_labels_and_coordinates(tmp_path, zones, month):
    from luigi_tasks import schema
    from luigi_tasks.files import read_sidecar
    from luigi_tasks.parquet_csv import parquet_to_csv

    src = write_month(tmp_path / "in.parquet", month, rows=20_000, seed=3)
    out = tmp_path / "out.csv"
    rows = parquet_to_csv(src, out, "yellow", dt.date.fromisoformat(month + "-01"), zones=zones,
                          sidecar_info={"version": "v"})
    info = read_sidecar(out)
    assert rows == info["rows"] == 20_000 and info["bad_rows"] == 0
    names = [c.name for c in schema.columns("yellow")]
    lines = list(csv.reader(out.open()))
    column = {name: [line[names.index(name)] for line in lines] for name in
              ("vendor_id", "vendor_name", "payment_type", "pu_location_id", "pickup_longitude", "extra")}
    assert set(column["vendor_name"]) == {"VTS", "CMT", "DDS"}
    assert {(v, n) for v, n in zip(column["vendor_id"], column["vendor_name"], strict=True)} == \
        {("2", "VTS"), ("1", "CMT"), ("", "DDS")}                  # DDS: no code, the name kept
    assert set(column["payment_type"]) <= {"1", "2", "3", "4", "5"}
    assert all(column["pickup_longitude"]) and any(float(v) == 0.0 for v in column["pickup_longitude"])
    without_zone = sum(1 for v in column["pu_location_id"] if v == "")
    assert without_zone == info["pickups_without_zone"] > 0
    assert {"0", "0.5", "1"} >= set(column["extra"])               # surcharge is the later extra
    if month.startswith("2009"):                                   # a label nobody has seen: "unknown", counted
        unseen = info["unmapped_labels"]["payment_type=OTHER"]
        assert unseen > 0 and column["payment_type"].count("5") >= unseen
    else:
        assert info["unmapped_labels"] == {}


def test_malformed_rows_fail_with_their_place_unless_skipped(tmp_path, zones):
    from luigi_tasks.errors import PermanentError
    from luigi_tasks.files import read_sidecar
    from luigi_tasks.parquet_csv import parquet_to_csv

    src = write_month(tmp_path / "in.parquet", "2010-02", rows=5000, seed=4, bad_timestamps=3)
    with pytest.raises(PermanentError, match=r"row \d+: column pickup_datetime has '2010-02-32 25:61:00', not a "
                                             r"timestamp"):
        parquet_to_csv(src, tmp_path / "out.csv", "yellow", dt.date(2010, 2, 1), zones=zones)
    assert not (tmp_path / "out.csv").exists()
    rows = parquet_to_csv(src, tmp_path / "out.csv", "yellow", dt.date(2010, 2, 1), zones=zones, bad_rows="skip")
    assert rows == 4997 and read_sidecar(tmp_path / "out.csv")["bad_rows"] == 3


@pytest.mark.parametrize("dataset, month, kwargs", [
    ("yellow", "2022-01", {"index_column": True}),                      # pandas' __index_level_0__
    ("yellow", "2020-03", {"null_columns": ("congestion_surcharge", "store_and_fwd_flag")}),
    ("green", "2014-03", {}), ("green", "2016-05", {}), ("green", "2020-01", {"index_column": True}),
    ("fhv", "2015-03", {}), ("fhv", "2017-06", {}), ("fhv", "2020-01", {}),
    ("fhvhv", "2019-02", {"null_columns": ("airport_fee",)}), ("fhvhv", "2025-01", {}),
])
def test_every_layout_and_oddity_converts(tmp_path, dataset, month, kwargs):
    from luigi_tasks import schema
    from luigi_tasks.parquet_csv import parquet_to_csv

    src = write_month(tmp_path / "in.parquet", month, rows=3000, seed=5, dataset=dataset, **kwargs)
    rows = parquet_to_csv(src, tmp_path / "out.csv", dataset, dt.date.fromisoformat(month + "-01"))
    lines = list(csv.reader((tmp_path / "out.csv").open()))
    assert rows == len(lines) == 3000
    assert all(len(line) == len(schema.columns(dataset)) for line in lines)


# -- end to end ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_2009_and_2010_months_load_with_coordinates_zones_and_a_report(run_luigi, db, http_root):
    (run_luigi.serve_dir / "taxi_zones.zip").write_bytes(SHAPES.read_bytes())
    shapes = f"{http_root.url}/{run_luigi.serve_dir.name}/taxi_zones.zip"
    for i, month in enumerate(("2009-01", "2010-03")):
        serve(run_luigi, month, 4000 + i, seed=i)
        proc = run_luigi("--month", month, "--DownloadZoneShapes-url", shapes)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert month_counts(db, run_luigi.table) == {"2009-01": 4000, "2010-03": 4001}
    with db.cursor() as cur:
        cur.execute(f"""SELECT count(pickup_longitude), count(pu_location_id),
                               count(*) FILTER (WHERE vendor_name = 'DDS' AND vendor_id IS NULL),
                               count(*) FILTER (WHERE pickup_longitude = 0 AND pu_location_id IS NULL)
                        FROM {run_luigi.table} WHERE source_month = '2009-01-01'""")
        coords, zoned, dds, zero = cur.fetchone()
        cur.execute("SELECT pickups_without_zone, unmapped_labels, bad_rows FROM ingest_loads "
                    "WHERE table_name = %s AND source_month = '2009-01-01'", (run_luigi.table,))
        without_zone, unmapped, bad = cur.fetchone()
    assert coords == 4000 and 0 < zoned < 4000 and dds > 0 and zero > 0
    assert without_zone == 4000 - zoned and bad == 0
    assert isinstance(unmapped, dict)


@pytest.mark.slow
def test_an_existing_table_gains_the_coordinate_columns_in_place(run_luigi, db, http_root):
    serve(run_luigi, "2022-01", 500)
    assert run_luigi("--month", "2022-01").returncode == 0
    with db.cursor() as cur:                                       # as the table was before this version
        for column in ("pickup_longitude", "pickup_latitude", "dropoff_longitude", "dropoff_latitude",
                       "vendor_name"):
            cur.execute(f"ALTER TABLE {run_luigi.table} DROP COLUMN {column}")
        cur.execute("SELECT oid FROM pg_class WHERE relname = %s", (run_luigi.table,))
        oid = cur.fetchone()[0]
    (run_luigi.serve_dir / "taxi_zones.zip").write_bytes(SHAPES.read_bytes())
    serve(run_luigi, "2009-06", 700)
    proc = run_luigi("--month", "2009-06", "--DownloadZoneShapes-url",
                     f"{http_root.url}/{run_luigi.serve_dir.name}/taxi_zones.zip")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with db.cursor() as cur:
        cur.execute("SELECT oid FROM pg_class WHERE relname = %s", (run_luigi.table,))
        assert cur.fetchone()[0] == oid                            # the same table: migrated, not recreated
        cur.execute(f"SELECT source_month, count(pickup_longitude) FROM {run_luigi.table} GROUP BY 1 ORDER BY 1")
        assert cur.fetchall() == [(dt.date(2009, 6, 1), 700), (dt.date(2022, 1, 1), 0)]


@pytest.mark.slow
def test_a_range_across_both_layout_changes_into_one_table(run_luigi, db, http_root):
    (run_luigi.serve_dir / "taxi_zones.zip").write_bytes(SHAPES.read_bytes())
    months = [f"{m:%Y-%m}" for m in month_range(dt.date(2009, 1, 1), dt.date(2011, 7, 1))]
    for i, month in enumerate(months):
        serve(run_luigi, month, 100 + i, seed=i)
    proc = run_luigi("--start", "2009-01", "--stop", "2011-07", "--workers", "2", "--DownloadZoneShapes-url",
                     f"{http_root.url}/{run_luigi.serve_dir.name}/taxi_zones.zip", task="IngestRange")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert month_counts(db, run_luigi.table) == {m: 100 + i for i, m in enumerate(months)}
    with db.cursor() as cur:
        cur.execute(f"""SELECT source_month >= '2011-01-01', count(pickup_longitude) > 0, count(pu_location_id) > 0
                        FROM {run_luigi.table} GROUP BY source_month""")
        assert set(cur.fetchall()) == {(False, True, True), (True, False, True)}   # per month: both layouts


@pytest.mark.slow
def test_a_2009_month_needs_the_shapefile_and_says_so(run_luigi, db):
    serve(run_luigi, "2009-03", 200)
    proc = run_luigi("--month", "2009-03", "--DownloadZoneShapes-url", "file:///nonexistent/taxi_zones.zip",
                     "--DownloadZoneShapes-retries", "0")
    assert proc.returncode == RC_TASK_FAILED and "taxi_zones.zip" in proc.stderr
    assert month_counts(db, run_luigi.table) == {}


@pytest.mark.slow
def test_a_file_with_a_pandas_index_column_loads(run_luigi, db):
    write_month(run_luigi.serve_dir / "yellow_tripdata_2021-03.parquet", "2021-03", 1200, seed=2, index_column=True)
    assert "__index_level_0__" in pq.read_schema(run_luigi.serve_dir / "yellow_tripdata_2021-03.parquet").names
    proc = run_luigi("--month", "2021-03")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert month_counts(db, run_luigi.table) == {"2021-03": 1200}
