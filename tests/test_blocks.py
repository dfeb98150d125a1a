"""The block registry: interpolation, masking, errors, the Prefect-shaped API and the CLI."""
from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import text
from support import DATABASE, ROOT

from luigi_tasks.blocks import MASK, BlockError, EmbeddedPostgres, SqlAlchemyConnector, read_registry

SECRET = "s3cr3t-Pa55word"


@pytest.fixture()
def registry(tmp_path, monkeypatch, pg):
    path = tmp_path / "blocks.yaml"
    path.write_text(f"""
blocks:
  server:
    type: sqlalchemy-connector
    host: ${{TEST_PGHOST}}
    port: ${{TEST_PGPORT:-5432}}
    database: {DATABASE}
    username: ${{TEST_PGUSER:-postgres}}
    password: ${{TEST_PGPASSWORD}}
    query:
      application_name: ${{TEST_APP:-luigi_tasks}}
  local:
    type: embedded-postgres
    data_dir: {pg.data_dir}
    database: {DATABASE}
""")
    monkeypatch.setenv("LUIGI_TASKS_BLOCKS", str(path))
    monkeypatch.setenv("TEST_PGHOST", str(pg.socket_dir))
    monkeypatch.setenv("TEST_PGPASSWORD", SECRET)
    monkeypatch.delenv("TEST_PGPORT", raising=False)
    monkeypatch.delenv("TEST_APP", raising=False)
    return path


def test_interpolation_uses_environment_and_defaults(registry, monkeypatch, pg):
    block = SqlAlchemyConnector.load("server")
    assert block.host == str(pg.socket_dir)
    assert block.port == 5432 and block.username == "postgres"
    assert block.password.get_secret_value() == SECRET
    assert block.query == {"application_name": "luigi_tasks"}
    monkeypatch.setenv("TEST_APP", "nightly")
    assert SqlAlchemyConnector.load("server").query == {"application_name": "nightly"}


def test_secrets_are_masked_everywhere_they_print(registry):
    block = SqlAlchemyConnector.load("server")
    for shown in (repr(block), str(block), str(block.password), repr(block.password), str(block.url())):
        assert SECRET not in shown
    assert MASK in repr(block)


def test_get_connection_returns_working_sqlalchemy_connection(registry):
    block = SqlAlchemyConnector.load("server")
    with block.get_connection(begin=False) as conn:
        assert conn.execute(text("SELECT current_database()")).scalar() == DATABASE
    with block.get_connection() as conn:   # begin=True: a transaction
        assert conn.in_transaction()
        assert conn.execute(text("SHOW application_name")).scalar() == "luigi_tasks"


def test_embedded_block_loads_through_the_generic_class(registry):
    block = SqlAlchemyConnector.load("local")
    assert isinstance(block, EmbeddedPostgres)
    with block.get_connection(begin=False) as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    conn = block.psycopg2_connect()   # what COPY and the luigi marker use
    try:
        assert conn.get_dsn_parameters()["host"] == str(block.server.socket_dir)
    finally:
        conn.close()


def test_unknown_block_names_the_known_ones(registry):
    with pytest.raises(BlockError, match=r"unknown block 'nope'.*known blocks: local, server"):
        SqlAlchemyConnector.load("nope")


def test_missing_variable_is_named(registry, monkeypatch):
    monkeypatch.delenv("TEST_PGPASSWORD")
    with pytest.raises(BlockError, match=r"block 'server': environment variable TEST_PGPASSWORD is not set"):
        SqlAlchemyConnector.load("server")


def test_malformed_registry_is_one_clear_error(tmp_path, monkeypatch):
    bad = tmp_path / "blocks.yaml"
    bad.write_text("blocks:\n  a: [unclosed\n")
    monkeypatch.setenv("LUIGI_TASKS_BLOCKS", str(bad))
    with pytest.raises(BlockError, match=r"is not valid YAML at line \d+"):
        read_registry()
    bad.write_text("- just a list\n")
    with pytest.raises(BlockError, match="must hold a 'blocks:' mapping"):
        read_registry()
    monkeypatch.setenv("LUIGI_TASKS_BLOCKS", str(tmp_path / "missing.yaml"))
    with pytest.raises(BlockError, match="not found"):
        read_registry()


def test_shipped_registry_has_both_blocks(monkeypatch):
    monkeypatch.setenv("LUIGI_TASKS_BLOCKS", str(ROOT / "config" / "blocks.yaml"))
    blocks = read_registry()
    assert blocks["local-postgres"]["type"] == "embedded-postgres"
    assert blocks["postgres-connector"]["type"] == "sqlalchemy-connector"


def _cli(*args: str, form: tuple[str, ...] = ("luigi_tasks", "blocks")) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *form, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("form", [("luigi_tasks", "blocks"), ("luigi_tasks.blocks",)])
def test_cli_list_show_check(registry, form):
    listing = _cli("list", form=form)
    assert listing.returncode == 0
    assert "server\tsqlalchemy-connector" in listing.stdout and "local\tembedded-postgres" in listing.stdout
    shown = _cli("show", "server")
    assert shown.returncode == 0 and MASK in shown.stdout and SECRET not in shown.stdout
    checked = _cli("check", "server")
    assert checked.returncode == 0 and "PostgreSQL 1" in checked.stdout


@pytest.mark.slow
def test_cli_check_reports_unreachable_server(registry, monkeypatch, tmp_path):
    monkeypatch.setenv("TEST_PGHOST", str(tmp_path))   # no server listens here
    checked = _cli("check", "server")
    assert checked.returncode == 2
    assert checked.stderr.startswith("error: block 'server': cannot connect to")
    assert len(checked.stderr.strip().splitlines()) == 1 and SECRET not in checked.stderr


@pytest.mark.slow
@pytest.mark.parametrize("change, message", [
    ({"TEST_PGUSER": "loader", "TEST_PGPASSWORD": "wrong-password"},
     'password authentication failed for user "loader"'),
    ({"TEST_DB": "no_such_db"}, 'database "no_such_db" does not exist'),
])
def test_cli_check_reports_wrong_password_and_missing_database(registry, monkeypatch, change, message):
    text = registry.read_text().replace(f"database: {DATABASE}\n    username", "database: ${TEST_DB:-"
                                        + DATABASE + "}\n    username", 1)
    registry.write_text(text)
    for key, value in change.items():
        monkeypatch.setenv(key, value)
    checked = _cli("check", "server")
    assert checked.returncode == 2
    assert message in checked.stderr and len(checked.stderr.strip().splitlines()) == 1
    assert "wrong-password" not in checked.stderr
