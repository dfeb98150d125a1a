"""Helpers the tests share (fixtures are in conftest.py): paths, the loopback file server's
handler, and small readers of what a run left behind."""
from __future__ import annotations

import http.server
import json
import os
import socket
import struct
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"                       # real data the tests use (see its README)
SAMPLE_2019_01 = DATA / "yellow_tripdata_sample_2019-01.csv.gz"
ZONE_LOOKUP = DATA / "taxi_zone_lookup.csv"
DATABASE = "ingest_test"
PASSWORD_ROLE = "loader"
ROLE_PASSWORD = "Zq9-unguessable-Secret-7Lw"
HISTORY_DB = "luigi_history_test"
RC_MISSING_DATA, RC_NOT_RUN, RC_TASK_FAILED, RC_SCHEDULING_ERROR, RC_BAD_ARGS = 20, 25, 30, 35, 40


def pg_env(pg) -> dict[str, str]:
    """The shipped registry's postgres-connector block, pointed at the test server."""
    return {"PGHOST": str(pg.socket_dir), "PGPORT": str(pg.port), "PGDATABASE": DATABASE,
            "PGUSER": "postgres", "PGPASSWORD": "unused-with-trust-auth",
            "LUIGI_TASKS_BLOCKS": str(ROOT / "config" / "blocks.yaml")}


def script_env(**extra: str) -> dict[str, str]:
    """The environment for a shell script of the project (scripts/): ``python`` on its PATH is the
    interpreter running the tests, activated or not (the scripts activate only the clone's own .venv)."""
    import sys
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, **extra}


def serve(run, month: str, rows: int, dataset: str = "yellow", seed: int = 1) -> Path:
    """Generate a TLC-shaped ``dataset`` file for ``month`` where the test's loopback source serves it."""
    from luigi_tasks.synth import write_month

    return write_month(run.serve_dir / f"{dataset}_tripdata_{month}.parquet", month, rows, seed, dataset)


def month_counts(db, table: str) -> dict[str, int]:
    with db.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (table,))
        if cur.fetchone()[0] is None:
            return {}
        cur.execute(f"SELECT to_char(source_month, 'YYYY-MM'), count(*) FROM {table} GROUP BY 1")
        return dict(cur.fetchall())


def markers(db, table: str) -> list[str]:
    with db.cursor() as cur:
        cur.execute("SELECT to_regclass('table_updates')")
        if cur.fetchone()[0] is None:
            return []
        cur.execute("SELECT update_id FROM table_updates WHERE target_table = %s ORDER BY 1", (table,))
        return [r[0] for r in cur.fetchall()]


def ran(proc) -> set[str]:
    """The tasks a run executed, by their human names ("Load yellow 2022-01")."""
    return {line.split("done      ", 1)[1].strip() for line in proc.stderr.splitlines() if "done      " in line}


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 60) -> bool:
    """Read the process's stderr until ``text`` appears (True) or it ends or time runs out (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            return False
        if text in line:
            return True
    return False


def run_on_a_terminal(cmd: list[str], env: dict, timeout: float = 60) -> tuple[int, str]:
    """Run ``cmd`` with a pseudo-terminal (40x120) as stdin, stdout and stderr: (exit code, what it drew)."""
    import fcntl
    import pty
    import select
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))   # a terminal has a size
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while select.select([leader], [], [], timeout)[0]:
        try:
            data = os.read(leader, 65536)
        except OSError:   # the terminal closed with the process
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=timeout)
    os.close(leader)
    return proc.returncode, b"".join(chunks).decode(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def luigid_api(url: str, method: str, **kwargs):
    query = urllib.parse.urlencode({"data": json.dumps(kwargs)})
    with urllib.request.urlopen(f"{url}/api/{method}?{query}", timeout=10) as resp:
        return json.load(resp)["response"]


def age_file(path: Path, days: float) -> None:
    t = time.time() - days * 86400
    os.utime(path, (t, t))


class SourceHandler(http.server.SimpleHTTPRequestHandler):
    """The loopback source: serves files, and misbehaves on request by path prefix.

    - ``/flaky/<mode>/<n>/<path>`` fails the first n GETs of <path>: ``500`` (an error status),
      ``reset`` (connection dropped before any reply), ``short`` (full Content-Length, half the body);
    - ``/deny/<path>`` answers 403 (what the CDN says for an object it does not have);
    - ``/slow/<seconds>/<path>`` answers late; ``/trickle/<seconds per 64 KiB>/<path>`` sends slowly;
    - ``/stall/<path>`` sends the headers and 64 KiB, then nothing (for 60 s) before closing;
    - ``/flakyhead/<n>/<path>`` fails the first n HEADs of <path> with 503;
    - ``/edges/<path>`` answers HEAD and GET with different Last-Modified (two CDN edges).
    HEAD (is the month published?) is neither slow nor flaky.
    """

    failures: dict[str, int] = {}
    gets: dict[str, list[float]] = {}          # path -> time.monotonic() of every GET, for delay checks
    lock = threading.Lock()

    def log_message(self, *args):  # keep pytest output clean
        pass

    @classmethod
    def get_times(cls, path_end: str) -> list[float]:
        with cls.lock:
            return sorted(t for path, times in cls.gets.items() if path.endswith(path_end) for t in times)

    def do_GET(self):
        with self.lock:
            self.gets.setdefault(self.path, []).append(time.monotonic())
        if self.path.startswith("/deny/"):
            self.send_error(403, "Forbidden")
            return
        if self.path.startswith("/slow/"):
            _, _, seconds, rest = self.path.split("/", 3)
            time.sleep(float(seconds))
            self.path = "/" + rest
        elif self.path.startswith("/stall/"):
            body = Path(self.translate_path("/" + self.path.split("/", 2)[2])).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:65536])
            self.wfile.flush()
            time.sleep(60)
            return
        elif self.path.startswith("/trickle/"):
            _, _, seconds, rest = self.path.split("/", 3)
            body = Path(self.translate_path("/" + rest)).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(0, len(body), 65536):
                self.wfile.write(body[i:i + 65536])
                time.sleep(float(seconds))
            return
        if self.path.startswith(("/flakyhead/", "/edges/")):
            self.path = "/" + self.path.split("/", 3 if self.path.startswith("/flakyhead/") else 2)[-1]
        if self._fail():
            return
        super().do_GET()

    def send_header(self, keyword, value):
        # /edges/: the GET edge has another copy of the object than the HEAD edge.
        if keyword == "Last-Modified" and self.command == "GET" and self.requestline.split()[1].startswith("/edges/"):
            value = "Mon, 01 Jan 2001 00:00:00 GMT"
        super().send_header(keyword, value)

    def do_HEAD(self):
        if self.path.startswith("/deny/"):
            self.send_error(403, "Forbidden")
            return
        if self.path.startswith("/flakyhead/"):
            _, _, n, rest = self.path.split("/", 3)
            with self.lock:
                seen = self.failures.get(self.path, 0)
                self.failures[self.path] = seen + 1
            self.path = "/" + rest
            if seen < int(n):
                self.send_error(503, "Service Unavailable")
                return
        if self.path.startswith("/flaky/"):
            self.path = "/" + self.path.split("/", 4)[4]
        elif self.path.startswith(("/slow/", "/trickle/")):
            self.path = "/" + self.path.split("/", 3)[3]
        elif self.path.startswith(("/stall/", "/edges/")):
            self.path = "/" + self.path.split("/", 2)[2]
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


class WebhookReceiver(http.server.BaseHTTPRequestHandler):
    """A JSON webhook on loopback (what Apprise's json:// sends): keeps every POSTed body."""

    received: list[dict] = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).received.append({"path": self.path, "json": json.loads(body or b"{}"),
                                    "authorization": self.headers.get("Authorization")})
        self.send_response(200)
        self.end_headers()


class MailSink:
    """An aiosmtpd handler keeping every message it is given."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(envelope.content.decode("utf-8", "replace"))
        return "250 OK"
