"""Defects found by review (issue 11), each with a test that failed before its fix."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from support import RC_MISSING_DATA, RC_TASK_FAILED, ROOT, age_file, markers, month_counts, ran, serve

pytestmark = pytest.mark.slow   # real processes end to end


def loaded_at(db, table: str, month: str):
    with db.cursor() as cur:
        cur.execute("SELECT loaded_at FROM ingest_loads WHERE table_name = %s AND source_month = %s",
                    (table, f"{month}-01"))
        row = cur.fetchone()
        return row[0] if row else None


def marker_inserted(db, table: str) -> list:
    with db.cursor() as cur:
        cur.execute("SELECT inserted FROM table_updates WHERE target_table = %s", (table,))
        return [r[0] for r in cur.fetchall()]


def stage_tables(db, table: str) -> list[str]:
    with db.cursor() as cur:
        cur.execute("SELECT relname FROM pg_class WHERE relname LIKE %s", (f"{table}%\\_load",))
        return [r[0] for r in cur.fetchall()]


# 1. Expiry: an expired download whose source is unchanged keeps the load; a changed one reloads; an
#    expired load reloads. The tests tell a reload from a skip by the load time and the marker's time.

def test_expired_download_with_an_unchanged_source_is_fetched_again_and_keeps_the_load(run_luigi, db):
    serve(run_luigi, "2022-01", 1200)
    assert run_luigi("--month", "2022-01").returncode == 0
    first_load, first_marker = loaded_at(db, run_luigi.table, "2022-01"), marker_inserted(db, run_luigi.table)
    raw = run_luigi.data_dir / "raw/yellow/yellow_tripdata_2022-01.parquet"
    csv = run_luigi.data_dir / "csv/yellow/yellow_tripdata_2022-01.csv"
    csv_mtime = csv.stat().st_mtime_ns
    age_file(raw, 8)
    proc = run_luigi("--month", "2022-01", "--DownloadMonth-cache-expiration", "7 days")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Download yellow 2022-01" in ran(proc)                       # fetched again...
    assert "source unchanged" in proc.stderr                              # ...found identical...
    assert loaded_at(db, run_luigi.table, "2022-01") == first_load        # ...so the load is kept
    assert marker_inserted(db, run_luigi.table) == first_marker
    assert csv.stat().st_mtime_ns == csv_mtime                            # and the CSV is not rewritten
    again = run_luigi("--month", "2022-01", "--DownloadMonth-cache-expiration", "7 days")
    assert again.returncode == 0 and ran(again) == set()                  # and then it is complete


def test_expired_download_with_a_changed_source_reloads(run_luigi, db):
    serve(run_luigi, "2022-02", 1200, seed=1)
    assert run_luigi("--month", "2022-02").returncode == 0
    first_load = loaded_at(db, run_luigi.table, "2022-02")
    age_file(run_luigi.data_dir / "raw/yellow/yellow_tripdata_2022-02.parquet", 8)
    serve(run_luigi, "2022-02", 1300, seed=2)                            # re-published meanwhile
    proc = run_luigi("--month", "2022-02", "--DownloadMonth-cache-expiration", "7 days")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert loaded_at(db, run_luigi.table, "2022-02") > first_load
    assert month_counts(db, run_luigi.table) == {"2022-02": 1300}


def test_expired_load_reloads(run_luigi, db):
    serve(run_luigi, "2022-03", 900)
    assert run_luigi("--month", "2022-03").returncode == 0
    first_load = loaded_at(db, run_luigi.table, "2022-03")
    with db.cursor() as cur:
        cur.execute("UPDATE table_updates SET inserted = inserted - interval '3 days' WHERE target_table = %s",
                    (run_luigi.table,))
    proc = run_luigi("--month", "2022-03", "--LoadMonth-cache-expiration", "2 days")
    assert proc.returncode == 0 and ran(proc) == {"Load yellow 2022-03", "Ingest yellow 2022-03"}
    assert loaded_at(db, run_luigi.table, "2022-03") > first_load and "already loaded" not in proc.stderr


# 2. A data file and its sidecar change together: a sidecar that does not describe the file beside it
#    (what a kill between the two renames left) makes the file count as missing.

def test_a_sidecar_that_does_not_match_its_file_is_not_trusted(run_luigi, db):
    serve(run_luigi, "2022-04", 1000, seed=1)
    assert run_luigi("--month", "2022-04").returncode == 0
    raw = run_luigi.data_dir / "raw/yellow/yellow_tripdata_2022-04.parquet"
    sidecar = raw.with_name(raw.name + ".source.json")
    old_bytes = raw.read_bytes()
    serve(run_luigi, "2022-04", 1100, seed=2)                            # the TLC re-publishes the month
    refresh = run_luigi("--month", "2022-04", "--refresh")                # ... and a refresh is killed between
    assert refresh.returncode == 0 and month_counts(db, run_luigi.table) == {"2022-04": 1100}
    new_info = json.loads(sidecar.read_text())
    raw.write_bytes(old_bytes)                                            # the old data under the new label
    sidecar.write_text(json.dumps(new_info))
    csv = run_luigi.data_dir / "csv/yellow/yellow_tripdata_2022-04.csv"
    csv.unlink()
    proc = run_luigi("--month", "2022-04", task="ParquetToCsv")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Download yellow 2022-04" in ran(proc)                         # re-fetched, not trusted
    assert pq.ParquetFile(raw).metadata.num_rows == 1100
    assert sum(1 for _ in csv.open("rb")) == 1100


# 3. A failed parallel load drops its committed stage table.

@pytest.mark.parametrize("connections", ["1", "2"])
def test_a_failed_load_leaves_no_stage_table(run_luigi, db, connections):
    serve(run_luigi, "2022-05", 100_000)                                 # several batches: parallel slices
    assert run_luigi("--month", "2022-05", task="ParquetToCsv").returncode == 0
    sidecar = run_luigi.data_dir / "csv/yellow/yellow_tripdata_2022-05.csv.source.json"
    info = json.loads(sidecar.read_text())
    assert len(info["offsets"]) > 1
    info["rows"] = 100_001                                                # the count check will fail
    sidecar.write_text(json.dumps(info))
    proc = run_luigi("--month", "2022-05", "--LoadMonth-retries", "0", "--LoadMonth-copy-connections", connections)
    assert proc.returncode == RC_TASK_FAILED and "loaded 100000 rows but the Parquet file has 100001" in proc.stderr
    assert stage_tables(db, run_luigi.table) == [] and month_counts(db, run_luigi.table) == {}


# 4. One table, one identity: t and public.t share the lock, the marker, the stage and the report.

def test_a_table_and_its_public_qualified_name_are_the_same_table(run_luigi, db):
    serve(run_luigi, "2022-06", 700)
    assert run_luigi("--month", "2022-06").returncode == 0
    qualified = run_luigi("--month", "2022-06", "--LoadMonth-table", f"public.{run_luigi.table}")
    assert qualified.returncode == 0 and ran(qualified) == set()          # the same month: complete
    assert markers(db, run_luigi.table) == [m for m in markers(db, run_luigi.table) if ":public." not in m]
    with db.cursor() as cur:
        cur.execute("SELECT DISTINCT table_name FROM ingest_loads WHERE table_name LIKE %s", (f"%{run_luigi.table}",))
        assert [r[0] for r in cur.fetchall()] == [run_luigi.table]


# 5. No row-count check is ever skipped: a CSV without its sidecar is rebuilt, with the count.

def test_a_csv_without_its_sidecar_is_rebuilt_and_checked(run_luigi, db):
    serve(run_luigi, "2022-07", 800)
    assert run_luigi("--month", "2022-07", task="ParquetToCsv").returncode == 0
    csv = run_luigi.data_dir / "csv/yellow/yellow_tripdata_2022-07.csv"
    lines = csv.read_bytes().splitlines(keepends=True)
    csv.write_bytes(b"".join(lines[:-1]))                                 # a row short...
    csv.with_name(csv.name + ".source.json").unlink()                     # ...and nothing to check it by,
    raw = run_luigi.data_dir / "raw/yellow/yellow_tripdata_2022-07.parquet"
    raw.unlink()                                                          # the raw file cleaned up
    raw.with_name(raw.name + ".source.json").unlink()
    proc = run_luigi("--month", "2022-07")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert month_counts(db, run_luigi.table) == {"2022-07": 800}          # rebuilt: every row


# 6. A marker's age is the same whatever the sessions' time zones.

def test_marker_age_does_not_depend_on_the_session_time_zone(run_luigi, db):
    serve(run_luigi, "2022-08", 600)
    assert run_luigi("--month", "2022-08", extra_env={"PGTZ": "America/Adak"}).returncode == 0     # UTC-10
    first = loaded_at(db, run_luigi.table, "2022-08")
    proc = run_luigi("--month", "2022-08", "--LoadMonth-cache-expiration", "2 hours",
                     extra_env={"PGTZ": "Pacific/Kiritimati"})                                        # UTC+14
    assert proc.returncode == 0 and ran(proc) == set()                   # a minute old, not 24 hours
    assert loaded_at(db, run_luigi.table, "2022-08") == first


# 7. --refresh asks the source as part of the run: not published is missing data, a blip is retried.

def test_refresh_of_an_unpublished_month_is_missing_data(run_luigi, db):
    proc = run_luigi("--month", "2022-09", "--refresh")
    assert proc.returncode == RC_MISSING_DATA, proc.stderr[-2000:]
    assert "not published" in proc.stderr


def test_refresh_retries_a_transient_failure_of_the_source(run_luigi, http_root, db):
    serve(run_luigi, "2022-09", 300)
    url = f"{http_root.url}/flakyhead/1/{run_luigi.serve_dir.name}/{{dataset}}_tripdata_{{month}}.parquet"
    proc = run_luigi("--month", "2022-09", "--refresh", url=url)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "retrying Download yellow 2022-09" in proc.stderr and month_counts(db, run_luigi.table) == {"2022-09": 300}


# 8. HEAD and GET may disagree on the version (CDN edges): the marker names what was loaded and counts.

def test_head_and_get_disagreeing_on_the_version_still_completes(run_luigi, http_root, db):
    serve(run_luigi, "2022-10", 400)
    url = f"{http_root.url}/edges/{run_luigi.serve_dir.name}/{{dataset}}_tripdata_{{month}}.parquet"
    proc = run_luigi("--month", "2022-10", "--refresh", url=url)
    assert proc.returncode == 0, proc.stderr[-2000:]
    raw = run_luigi.data_dir / "raw/yellow/yellow_tripdata_2022-10.parquet"
    loaded = json.loads(raw.with_name(raw.name + ".source.json").read_text())["version"]
    assert markers(db, run_luigi.table) == [f"yellow:2022-10:{run_luigi.table}:{loaded}"]
    again = run_luigi("--month", "2022-10", "--refresh", url=url)
    assert again.returncode == 0 and ran(again) == set()


# 9. A shared data directory: another host's temporary file is not this host's to remove.

def test_temporary_files_are_reaped_only_for_this_hosts_dead_writers(tmp_path):
    from luigi_tasks.files import atomic_file

    here = socket.gethostname()
    mine_dead = tmp_path / f".out.csv.tmp-{here}-999999999"
    theirs = tmp_path / ".out.csv.tmp-otherhost-999999999"              # a live download on another host
    theirs_old = tmp_path / ".out.csv.tmp-otherhost-1"
    for path in (mine_dead, theirs, theirs_old):
        path.write_text("x")
    age_file(theirs_old, 2)                                               # two days without a write
    with atomic_file(tmp_path / "out.csv") as tmp:
        assert here in tmp.name and str(os.getpid()) in tmp.name
        tmp.write_text("done")
    assert not mine_dead.exists() and theirs.exists() and not theirs_old.exists()


# 10. The embedded server as root changes no permission outside its own directories.

@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the embedded server as another user")
def test_embedded_server_as_root_changes_no_permissions_outside_its_directories(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    env = {**os.environ, "LUIGI_TASKS_PGDATA": str(private / "pg")}
    proc = subprocess.run([sys.executable, "-m", "luigi_tasks", "db", "start"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 40, proc.stderr
    assert "cannot reach" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert (private.stat().st_mode & 0o777) == 0o700                    # untouched
    assert not (private / "pg").exists()


# 11. file: URLs: relative paths work, a host part is refused.

def test_file_urls_relative_and_with_a_host(run_luigi, db, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    from luigi_tasks.synth import write_month

    write_month(source / "yellow_tripdata_2022-11.parquet", "2022-11", 250)
    relative = run_luigi.command("--month", "2022-11", url="file:src/{dataset}_tripdata_{month}.parquet")
    proc = subprocess.run(relative, cwd=tmp_path, env=run_luigi.env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert month_counts(db, run_luigi.table) == {"2022-11": 250}
    hosted = run_luigi("--month", "2022-12", url="file://src/{dataset}_tripdata_{month}.parquet")
    assert hosted.returncode != 0
    assert "file URL with a host part" in hosted.stderr and "Traceback" not in hosted.stderr


# 13. status agrees with what a run would do, and does not start the embedded server.

def test_status_agrees_with_the_markers(run_luigi, db):
    serve(run_luigi, "2023-01", 200)
    assert run_luigi("--month", "2023-01").returncode == 0
    with db.cursor() as cur:
        cur.execute("DELETE FROM table_updates WHERE target_table = %s", (run_luigi.table,))
    status = subprocess.run([sys.executable, "-m", "luigi_tasks", "status", "--json", "--block", "postgres-connector",
                             "--table", run_luigi.table, "--start", "2023-01", "--stop", "2023-02"], cwd=ROOT,
                            env=run_luigi.env, capture_output=True, text=True, timeout=60)
    report = json.loads(status.stdout)
    assert report["missing"] == ["2023-01"] and report["loaded"] == []    # a run would load it again


def test_status_does_not_start_the_embedded_server(tmp_path, env):
    pgdata = tmp_path / "pgdata"
    proc = subprocess.run([sys.executable, "-m", "luigi_tasks", "status"], cwd=ROOT,
                          env={**env, "LUIGI_TASKS_PGDATA": str(pgdata)}, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 3 and "not running" in proc.stdout
    assert not pgdata.exists()


# 14. Attaching the month's partition does not scan it.

def test_attach_partition_does_not_scan_the_month(run_luigi, pg, db):
    serve(run_luigi, "2023-02", 500)
    log = pg.data_dir / "server.log"
    start = log.stat().st_size
    proc = run_luigi("--month", "2023-02", extra_env={"PGOPTIONS": "-c log_min_messages=debug1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(log, "rb") as fh:
        fh.seek(start)
        text = fh.read().decode(errors="replace")
    assert f"partition constraint for table \"{run_luigi.table}_2023_02\" is implied by existing constraints" in text


# Tests that had to become able to fail.

def test_two_processes_on_the_same_month_copy_it_exactly_once(run_luigi, db):
    serve(run_luigi, "2023-03", 60_000)
    cmd = run_luigi.command("--month", "2023-03", "--no-lock")            # really run both at once
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=run_luigi.env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs[0][-2000:] + errs[1][-2000:]
    copies = sum(e.count("loaded 60,000 rows") for e in errs)
    skips = sum(e.count("loaded meanwhile by another process") for e in errs)
    assert copies == 1                                                    # exactly one COPY
    assert copies + skips == sum("running   Load yellow 2023-03" in e for e in errs)
    assert month_counts(db, run_luigi.table) == {"2023-03": 60_000} and len(markers(db, run_luigi.table)) == 1


def test_database_down_at_the_start_is_one_line_and_exit_35(run_luigi, tmp_path):
    proc = run_luigi("--month", "2023-04", extra_env={"PGHOST": str(tmp_path)})   # no server listens there
    assert proc.returncode == 35, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if " ERROR " in ln]
    assert len(errors) == 1 and "cannot connect to" in errors[0] and "Traceback" not in proc.stderr


def test_pickups_outside_the_month_are_counted_exactly(run_luigi, db):
    src = serve(run_luigi, "2023-05", 40_000)
    table = pq.read_table(src, columns=["tpep_pickup_datetime"])
    import pyarrow.compute as pc

    col = table["tpep_pickup_datetime"]
    before = pc.sum(pc.less(col, pc.strptime("2023-05-01", "%Y-%m-%d", "us"))).as_py()
    after = pc.sum(pc.greater_equal(col, pc.strptime("2023-06-01", "%Y-%m-%d", "us"))).as_py()
    assert before > 0 and after > 0                                       # the generator makes both
    assert run_luigi("--month", "2023-05").returncode == 0
    with db.cursor() as cur:
        cur.execute("SELECT pickups_outside_month FROM ingest_loads WHERE table_name = %s", (run_luigi.table,))
        assert cur.fetchone()[0] == before + after


def test_one_copy_connection_loads_with_a_single_copy_freeze(run_luigi, pg, db):
    serve(run_luigi, "2023-06", 3000)
    log = pg.data_dir / "server.log"
    start = log.stat().st_size
    proc = run_luigi("--month", "2023-06", "--LoadMonth-copy-connections", "1",
                     extra_env={"PGOPTIONS": "-c log_statement=all"})
    assert proc.returncode == 0 and month_counts(db, run_luigi.table) == {"2023-06": 3000}
    with open(log, "rb") as fh:
        fh.seek(start)
        copies = [ln for ln in fh.read().decode(errors="replace").splitlines() if "COPY " in ln]
    assert len(copies) == 1 and "FREEZE true" in copies[0]
