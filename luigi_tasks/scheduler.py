"""The central scheduler: luigid on 127.0.0.1 with its state, logs, pid file and task history under data/.

    python -m luigi_tasks scheduler start|stop|status [--port 8082] [--address 127.0.0.1]
    python -m luigi_tasks scheduler enable TASK_ID ... | --all

Task history goes to a database (``[luigid] history_database``) in the PostgreSQL
server of a block (``[luigid] block``): a SQLite history crashes luigid under SQLAlchemy 2.
luigid gets a generated config file (``data/scheduler/luigid.cfg``, mode 0600) that is
this repository's luigi.cfg plus ``[task_history] db_connection``.
"""
from __future__ import annotations

import configparser
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import luigi

from luigi_tasks.blocks import SqlAlchemyConnector
from luigi_tasks.config import PATH_SETTINGS, luigid
from luigi_tasks.errors import ConfigError, PermanentError, TransientError
from luigi_tasks.pg import database_error


class Scheduler:
    def __init__(self, address: str, port: int, state_dir: str | Path, block: str, history_database: str,
                 config_files: list[str] | None = None):
        self.address, self.port = address, int(port)
        # luigid reads these (later ones win), plus the task-history settings we add.
        self.config_files = config_files or [p for p in luigi.configuration.get_config()._config_paths
                                             if Path(p).suffix == ".cfg"]
        self.dir = Path(state_dir).absolute()
        self.block_name, self.history_database = block, history_database

    @classmethod
    def from_config(cls, **overrides) -> Scheduler:
        cfg = luigid()
        values = {k: getattr(cfg, k) for k in ("address", "port", "state_dir", "block", "history_database")}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def pidfile(self) -> Path:
        return self.dir / "luigid.pid"

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def pid(self) -> int | None:
        """The running luigid's pid; a stale pid file (dead process, or not luigid) is removed."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            cmdline = ""
        if "luigid" not in cmdline:
            self.pidfile.unlink(missing_ok=True)
            return None
        return pid

    def responding(self) -> bool:
        try:
            with urllib.request.urlopen(urllib.request.Request(f"{self.url}/", method="HEAD"), timeout=2):
                return True
        except OSError:
            return False

    def history_url(self) -> str:
        block = SqlAlchemyConnector.load(self.block_name)
        self._create_history_database(block)
        url = block.url().set(database=self.history_database)
        return url.render_as_string(hide_password=False)

    def _create_history_database(self, block: SqlAlchemyConnector) -> None:
        import psycopg2
        from psycopg2 import sql

        conn = block.psycopg2_connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.history_database,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.history_database)))
        except psycopg2.Error as exc:
            raise database_error(f"cannot create the task-history database {self.history_database!r} "
                                 f"in {block.describe()}", exc) from exc
        finally:
            conn.close()

    def write_config(self) -> Path:
        cfg = configparser.ConfigParser(interpolation=None)
        cfg.read([p for p in self.config_files if Path(p).exists()])
        live = luigi.configuration.get_config()
        for section, key in PATH_SETTINGS:   # relative paths, as resolved against their own files
            if cfg.has_option(section, key) and live.has_option(section, key):
                cfg.set(section, key, live.get(section, key))
        for section, values in {
            "scheduler": {"record_task_history": "true", "state_path": str(self.dir / "state.pickle")},
            "task_history": {"db_connection": self.history_url()},
        }.items():
            if not cfg.has_section(section):
                cfg.add_section(section)
            for key, value in values.items():
                cfg.set(section, key, value)
        for section in cfg.sections():   # luigi's parser interpolates: a literal % must be %%
            for key, value in cfg.items(section):
                cfg.set(section, key, value.replace("%", "%%"))
        path = self.dir / "luigid.cfg"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)   # it may hold a password
        with os.fdopen(fd, "w") as fh:
            cfg.write(fh)
        return path

    def start(self, wait: float = 30) -> int:
        pid = self.pid()
        if pid and self.responding():
            return pid
        if pid:
            raise PermanentError(f"luigid (pid {pid}) is running but not answering on {self.url}; "
                              f"see {self.dir / 'log'}")
        (self.dir / "log").mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "LUIGI_CONFIG_PATH": str(self.write_config())}
        luigid_bin = shutil.which("luigid") or str(Path(sys.executable).with_name("luigid"))
        with open(self.dir / "log" / "luigid.out", "ab") as out:
            proc = subprocess.Popen(
                [luigid_bin, "--address", self.address, "--port", str(self.port),
                 "--state-path", str(self.dir / "state.pickle"), "--logdir", str(self.dir / "log")],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True, cwd=self.dir)
        self.pidfile.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pidfile.unlink(missing_ok=True)
                tail = (self.dir / "log" / "luigid.out").read_text(errors="replace").strip().splitlines()[-1:]
                raise PermanentError(f"luigid exited at start-up (code {proc.returncode}): "
                                  f"{tail[0] if tail else 'no output'}; see {self.dir / 'log'}")
            if self.responding():
                return proc.pid
            time.sleep(0.2)
        raise PermanentError(f"luigid did not answer on {self.url} within {wait:.0f} s; see {self.dir / 'log'}")

    def stop(self, wait: float = 15) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)   # luigid saves its state on SIGTERM
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            # Reap it if it is our child (started by this process), or its zombie stays in /proc.
            with contextlib.suppress(ChildProcessError):   # not our child: its own parent reaps it
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)
        return True

    def api(self, method: str, **kwargs) -> dict:
        """Call luigid's HTTP API (``/api/<method>?data=<json>``)."""
        query = urllib.parse.urlencode({"data": json.dumps(kwargs)})
        try:
            with urllib.request.urlopen(f"{self.url}/api/{method}?{query}", timeout=10) as resp:
                return json.load(resp).get("response") or {}
        except OSError as exc:
            raise TransientError(f"luigid at {self.url} does not answer: {getattr(exc, 'reason', exc)}") from exc

    def enable(self, task_ids: list[str]) -> list[str]:
        """Re-enable DISABLED tasks (all of them if ``task_ids`` is empty); return the ids re-enabled."""
        disabled = self.api("task_list", status="DISABLED", upstream_status="")
        unknown = [t for t in task_ids if t not in disabled]
        if unknown:
            raise ConfigError(f"not DISABLED in luigid at {self.url}: {', '.join(unknown)} "
                              f"(DISABLED now: {', '.join(sorted(disabled)) or 'none'})")
        chosen = task_ids or sorted(disabled)
        for task_id in chosen:
            self.api("re_enable_task", task_id=task_id)
        return chosen

    def status(self) -> dict:
        pid = self.pid()
        return {"running": bool(pid) and self.responding(), "pid": pid, "url": self.url,
                "visualizer": f"{self.url}/static/visualiser/index.html", "state_dir": str(self.dir)}


if __name__ == "__main__":   # the documented module form: python -m luigi_tasks.scheduler start|stop|status
    from luigi_tasks.cli import main

    sys.exit(main(["scheduler", *sys.argv[1:]]))
