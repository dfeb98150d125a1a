"""Reliability and breadth: every dataset and year, zones, validation, kills, a lost database,
concurrent runs, bad input. Real processes, real servers."""
from __future__ import annotations

import datetime as dt
import json
import random
import resource
import signal
import subprocess
import time

import psycopg2
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from support import DATABASE, ROOT, ZONE_LOOKUP, markers, month_counts, serve, wait_for_line

from luigi_tasks.files import SidecarTarget, read_sidecar
from luigi_tasks.load import LoadMonth
from luigi_tasks.localdb import LocalPostgres
from luigi_tasks.sources import validate_parquet

pytestmark = pytest.mark.slow   # real processes end to end


@pytest.mark.parametrize("dataset", ["yellow", "green", "fhv", "fhvhv"])
def test_every_dataset_loads_into_its_own_table(run_luigi, db, dataset):
    serve(run_luigi, "2022-03", 1500, dataset)
    proc = run_luigi("--dataset", dataset, "--month", "2022-03")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert month_counts(db, run_luigi.table) == {"2022-03": 1500}
    assert markers(db, run_luigi.table)[0].startswith(f"{dataset}:2022-03:")


def test_default_table_names_per_dataset():
    names = {d: LoadMonth(dataset=d, month=dt.date(2022, 3, 1)).table_name
             for d in ("yellow", "green", "fhv", "fhvhv")}
    assert names == {"yellow": "yellow_taxi_trips", "green": "green_taxi_trips", "fhv": "fhv_taxi_trips",
                     "fhvhv": "fhvhv_taxi_trips"}


def test_schema_drift_across_years_into_one_table(run_luigi, db):
    months = ["2019-01", "2021-06", "2022-01", "2023-01", "2024-06", "2025-01"]
    for i, month in enumerate(months):
        serve(run_luigi, month, 1000 + i, seed=i)
    for month in months:
        assert run_luigi("--month", month).returncode == 0
    assert month_counts(db, run_luigi.table) == {m: 1000 + i for i, m in enumerate(months)}
    with db.cursor() as cur:
        cur.execute(f"""SELECT to_char(source_month, 'YYYY-MM'), count(airport_fee), count(cbd_congestion_fee),
                               count(passenger_count) FROM {run_luigi.table} GROUP BY 1 ORDER BY 1""")
        by_month = {m: (fee, cbd, pax) for m, fee, cbd, pax in cur.fetchall()}
    assert by_month["2019-01"][0] == 0 and by_month["2021-06"][0] > 0     # airport_fee from 2021
    assert by_month["2023-01"][0] > 0                                       # spelled Airport_fee in 2023
    assert by_month["2025-01"][1] > 0 and by_month["2024-06"][1] == 0      # cbd_congestion_fee from 2025
    assert by_month["2024-06"][2] > 0                                       # int64 passenger_count in 2024


def test_zone_lookup_loads_and_joins(run_luigi, db, http_root):
    (run_luigi.serve_dir / "zones.csv").write_bytes(ZONE_LOOKUP.read_bytes())
    serve(run_luigi, "2022-01", 800)
    assert run_luigi("--month", "2022-01").returncode == 0
    zones_table = f"{run_luigi.table}_zones"
    proc = run_luigi("--DownloadZones-url", f"{http_root.url}/{run_luigi.serve_dir.name}/zones.csv",
                     "--LoadZones-block", "postgres-connector", "--LoadZones-table", zones_table, task="LoadZones")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with db.cursor() as cur:
        cur.execute(f"SELECT count(*), count(DISTINCT borough) FROM {zones_table}")
        assert cur.fetchone() == (265, 7)
        cur.execute(f"SELECT zone FROM {zones_table} WHERE location_id = 132")
        assert cur.fetchone()[0] == "JFK Airport"
        cur.execute(f"""SELECT count(*) FROM {run_luigi.table} t JOIN {zones_table} z
                        ON z.location_id = t.pu_location_id""")
        assert cur.fetchone()[0] == 800
    (run_luigi.serve_dir / "bad.csv").write_text("<html><body>Access Denied</body></html>")
    bad = run_luigi("--DownloadZones-url", f"{http_root.url}/{run_luigi.serve_dir.name}/bad.csv",
                    "--DownloadZones-retries", "0", "--pipeline-data-dir", str(run_luigi.data_dir / "other"),
                    "--LoadZones-block", "postgres-connector", "--LoadZones-table", zones_table + "_b",
                    task="LoadZones")
    assert bad.returncode == 30 and "returned an HTML page" in bad.stderr


def test_row_count_mismatch_rolls_back_with_both_numbers(run_luigi, db):
    serve(run_luigi, "2022-01", 1200)
    assert run_luigi("--month", "2022-01", task="ParquetToCsv").returncode == 0
    sidecar = run_luigi.data_dir / "csv/yellow/yellow_tripdata_2022-01.csv.source.json"
    info = json.loads(sidecar.read_text())
    info["rows"] = 1201                      # as if the file's metadata promised one more row
    sidecar.write_text(json.dumps(info))
    proc = run_luigi("--month", "2022-01", "--LoadMonth-retries", "0")
    assert proc.returncode == 30
    assert "loaded 1200 rows but the Parquet file has 1201" in proc.stderr
    assert month_counts(db, run_luigi.table) == {} and markers(db, run_luigi.table) == []


def _total(db, table: str) -> tuple[int, float] | None:
    """The month's row count and its total_amount sum: what tells one version of a month from another."""
    with db.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (table,))
        if cur.fetchone()[0] is None:
            return None
        cur.execute(f"SELECT count(*), round(coalesce(sum(total_amount), 0)::numeric, 2) FROM {table}")
        count, total = cur.fetchone()
        return (count, float(total)) if count else None


def _version_of(src) -> tuple[int, float]:
    """(rows, total_amount sum) of a generated file: how its month looks once loaded."""
    t = pq.read_table(src, columns=["total_amount"])
    return t.num_rows, round(float(pc.sum(t["total_amount"]).as_py()), 2)


def _is_one_of(found: tuple[int, float] | None, allowed: list) -> bool:
    return any(found == a if found is None or a is None else
               (found[0] == a[0] and abs(found[1] - a[1]) < 0.05) for a in allowed)


def _check_invariants(run, db, table: str, allowed: list) -> None:
    """After a kill: every file that looks finished is finished, the table holds one whole version of the
    month (or none), and a marker exists exactly when rows do."""
    raw = run.data_dir / "raw/yellow/yellow_tripdata_2022-01.parquet"
    csv_file = run.data_dir / "csv/yellow/yellow_tripdata_2022-01.csv"
    if SidecarTarget(str(raw)).exists():
        assert validate_parquet(raw, "raw") == read_sidecar(raw)["rows"]
    if SidecarTarget(str(csv_file)).exists():
        with open(csv_file, "rb") as fh:
            assert sum(1 for _ in fh) == read_sidecar(csv_file)["rows"]
    assert _is_one_of(_total(db, table), allowed)              # all of one version of the month, or none
    assert len(markers(db, table)) == (0 if _total(db, table) is None else 1)


def _leftovers(run, db, table: str) -> list[str]:
    files = [p.name for p in run.data_dir.rglob(".*.tmp-*")]
    with db.cursor() as cur:
        cur.execute("SELECT relname FROM pg_class WHERE relname LIKE %s", (f"{table}%\\_load",))
        return files + [r[0] for r in cur.fetchall()]


@pytest.mark.parametrize("reload", [False, True], ids=["first-load", "reload"])
def test_sigkill_at_random_points_never_leaves_a_half_month(run_luigi, db, http_root, reload):
    """SIGKILL in the middle of download, conversion and COPY, of a first load and of a reload (a
    re-published month under --refresh): the old month survives intact or the new one is whole."""
    rows = 250_000
    old_rows = 120_000
    trickle = f"{http_root.url}/trickle/0.01/{run_luigi.serve_dir.name}/{{dataset}}_tripdata_{{month}}.parquet"
    rng = random.Random(7 if reload else 8)
    stages = ["Download", "Convert", "Load"] * 3             # 9 trials each way
    reached = 0
    for trial, stage in enumerate(stages):
        table = f"{run_luigi.table}_{trial}"
        data = run_luigi.data_dir.parent / f"trial{'r' if reload else 'f'}{trial}"
        args = ("--month", "2022-01", "--LoadMonth-table", table, "--pipeline-data-dir", str(data))
        allowed: list = [None]
        if reload:                                            # an older version of the month is loaded
            old = _version_of(serve(run_luigi, "2022-01", old_rows, seed=100))
            assert run_luigi(*args).returncode == 0 and _is_one_of(_total(db, table), [old])
            allowed = [old]
            args = (*args, "--refresh")
        allowed.append(_version_of(serve(run_luigi, "2022-01", rows, seed=1)))   # the version to load now
        cmd = run_luigi.command(*args, url=trickle if stage == "Download" else None)
        proc = subprocess.Popen(cmd, cwd=ROOT, env=run_luigi.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        reached += wait_for_line(proc, f"running   {stage} yellow 2022-01")
        time.sleep(rng.uniform(0, 0.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        proc.stderr.close()
        run_luigi.data_dir = data
        _check_invariants(run_luigi, db, table, allowed)
        again = run_luigi(*args)
        assert again.returncode == 0, again.stderr[-2000:]
        assert month_counts(db, table) == {"2022-01": rows}
        assert len(markers(db, table)) == 1
        assert _leftovers(run_luigi, db, table) == []          # the re-run left no temporary file, no stage
    assert reached == len(stages)                              # every kill landed inside its step


def test_database_lost_mid_run_fails_clearly_then_recovers(run_luigi, server_dir, http_root):
    server = LocalPostgres(server_dir / "lost-pg", port=5432)
    server.ensure_running(DATABASE)
    try:
        env = {"PGHOST": str(server.socket_dir)}
        serve(run_luigi, "2022-01", 100_000)
        cmd = run_luigi.command("--month", "2022-01", "--LoadMonth-retries", "1")
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**run_luigi.env, **env}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        assert wait_for_line(proc, "running   Convert yellow 2022-01")
        server.stop()                                        # the database goes away
        rest = proc.stderr.read()
        proc.wait(timeout=120)
        assert proc.returncode == 30
        failures = [ln for ln in rest.splitlines() if "failed    Load yellow 2022-01" in ln]
        retried = [ln for ln in rest.splitlines() if "retrying Load yellow 2022-01: attempt 2 of 2" in ln]
        assert len(retried) == 1 and len(failures) == 1      # tried, retried per config, then gave up
        assert "cannot connect to" in failures[-1] and "cannot connect to" in retried[0]
        assert "Traceback" not in rest
        server.ensure_running(DATABASE)
        again = run_luigi("--month", "2022-01", extra_env=env)
        assert again.returncode == 0, again.stderr[-2000:]
        with psycopg2.connect(**server.connect_params(DATABASE)) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {run_luigi.table}")
            assert cur.fetchone()[0] == 100_000
    finally:
        server.stop()


def test_luigi_lock_turns_an_identical_second_run_away(run_luigi, db, http_root):
    serve(run_luigi, "2022-01", 1000)
    slow = f"{http_root.url}/slow/2/{run_luigi.serve_dir.name}/{{dataset}}_tripdata_{{month}}.parquet"
    cmd = run_luigi.command("--month", "2022-01", url=slow)
    first = subprocess.Popen(cmd, cwd=ROOT, env=run_luigi.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    assert wait_for_line(first, "running   Download yellow 2022-01")
    second = subprocess.run(cmd, cwd=ROOT, env=run_luigi.env, capture_output=True, text=True, timeout=60)
    first.communicate(timeout=120)
    assert second.returncode == 10 and first.returncode == 0
    assert month_counts(db, run_luigi.table) == {"2022-01": 1000}


# -- bad input: one line naming the problem, non-zero exit, nothing loaded --------------------------------

def _one_line_failure(proc, db, table, message: str, code: int | None = None) -> None:
    assert proc.returncode != 0
    if code is not None:
        assert proc.returncode == code, proc.stderr[-2000:]
    assert message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert month_counts(db, table) == {} and markers(db, table) == []


@pytest.mark.parametrize("args, message", [
    (("--month", "2022-13"), "invalid month '2022-13'"),
    (("--month", "22-01"), "invalid month '22-01'"),
    (("--dataset", "fhvhv", "--month", "2019-01"), "the TLC publishes fhvhv trips from 2019-02 on"),
    (("--month", "2999-01"), "that month has not happened yet"),
    (("--dataset", "purple", "--month", "2022-01"), "purple"),
    (("--month", "2022-01", "--LoadMonth-table", "x; drop table y"), "invalid table name 'x; drop table y'"),
])
def test_bad_arguments(run_luigi, db, args, message):
    _one_line_failure(run_luigi(*args), db, run_luigi.table, message, 40)   # [retcode] unhandled_exception


def test_missing_required_column(run_luigi, db):
    t = pq.read_table(serve(run_luigi, "2022-01", 500)).drop_columns(["tpep_pickup_datetime"])
    pq.write_table(t, run_luigi.serve_dir / "yellow_tripdata_2022-01.parquet")
    _one_line_failure(run_luigi("--month", "2022-01"), db, run_luigi.table,
                      "required column tpep_pickup_datetime is missing", 30)


def test_http_403_is_missing_data(run_luigi, db, http_root):
    # The CDN answers 403 AccessDenied for an object it does not have.
    url = f"{http_root.url}/deny/{run_luigi.serve_dir.name}/{{dataset}}_tripdata_{{month}}.parquet"
    _one_line_failure(run_luigi("--month", "2022-01", url=url), db, run_luigi.table, "answers HTTP 403", 20)


def test_connection_refused(run_luigi, db):
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                       # nothing listens here once closed
    proc = run_luigi("--month", "2022-01", url=f"http://127.0.0.1:{port}/{{dataset}}_tripdata_{{month}}.parquet")
    _one_line_failure(proc, db, run_luigi.table, "Connection refused")


def test_missing_secret_variable(run_luigi, db, env):
    env_without = {k: v for k, v in env.items() if k != "PGPASSWORD"}
    cmd = run_luigi.command("--month", "2022-01")
    proc = subprocess.run(cmd, cwd=ROOT, env=env_without, capture_output=True, text=True, timeout=120)
    _one_line_failure(proc, db, run_luigi.table, "environment variable PGPASSWORD is not set", 35)


def test_malformed_blocks_yaml(run_luigi, db, tmp_path):
    bad = tmp_path / "blocks.yaml"
    bad.write_text("blocks:\n  postgres-connector: {type: sqlalchemy-connector, host: [\n")
    proc = run_luigi("--month", "2022-01", extra_env={"LUIGI_TASKS_BLOCKS": str(bad)})
    _one_line_failure(proc, db, run_luigi.table, "is not valid YAML", 35)


def test_data_dir_not_writable(run_luigi, db, tmp_path):
    serve(run_luigi, "2022-01", 300)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    proc = run_luigi("--month", "2022-01", "--pipeline-data-dir", str(blocker / "data"))
    _one_line_failure(proc, db, run_luigi.table, "cannot write", 30)


def test_disk_full_during_download(run_luigi, db):
    serve(run_luigi, "2022-01", 100_000)                # a few MB: more than the 1 MB limit below

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    proc = subprocess.run(run_luigi.command("--month", "2022-01", "--DownloadMonth-retries", "0"), cwd=ROOT,
                          env=run_luigi.env, capture_output=True, text=True, timeout=120, preexec_fn=limit_file_size)
    _one_line_failure(proc, db, run_luigi.table, "File too large (disk full or a file size limit)", 30)
    assert not list(run_luigi.data_dir.rglob("*.parquet*"))
    assert not list(run_luigi.data_dir.rglob(".*tmp*"))
