"""What every PostgreSQL user of the package shares: errors as the package's two kinds, transient
(retry) or permanent (fail at once), and the lock that serialises creating tables.

Classified by SQLSTATE where the server sent one, by the driver's text where it did not
(a refused or dropped connection has no SQLSTATE). The psycopg2 error stays chained as
the cause; its message carries user and host, never the password.
"""
from __future__ import annotations

from luigi_tasks.errors import IngestError, PermanentError, TransientError, first_line

# SQLSTATE classes and codes worth another attempt: the connection, the server's resources or
# state, and the concurrency failures PostgreSQL itself asks clients to retry.
_TRANSIENT_CLASSES = ("08", "53", "57")
_TRANSIENT_CODES = {"40001", "40P01", "55P03", "55006"}
# Connection failures that will fail the same way next time.
_PERMANENT_TEXT = ("password authentication failed", "no pg_hba.conf entry", "does not exist",
                   "authentication failed", "permission denied")


def is_transient(exc: BaseException) -> bool:
    code = getattr(exc, "pgcode", None)
    if code:
        return code[:2] in _TRANSIENT_CLASSES or code in _TRANSIENT_CODES
    import psycopg2

    if isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        return not any(text in str(exc) for text in _PERMANENT_TEXT)
    return False


def database_error(what: str, exc: BaseException) -> IngestError:
    """A one-line error ``<what>: <the server's first line>`` of the right kind."""
    kind = TransientError if is_transient(exc) else PermanentError
    return kind(f"{what}: {first_line(exc)}")


def serialize_ddl(cur) -> None:
    """Inside a transaction: wait for any other process creating the package's tables (released at commit)."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtext('luigi_tasks ddl'))")


def session_timeouts(conn, lock_timeout: float | None, statement_timeout: float | None):
    """Bound every wait of this session: a lock (a DDL lock, another loader's advisory lock) and any
    statement. None or 0: no bound. Returns ``conn``."""
    ms = [str(int(max(0.0, seconds or 0) * 1000)) for seconds in (lock_timeout, statement_timeout)]
    with conn.cursor() as cur:
        cur.execute("SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)",
                    ms)
    conn.commit()
    return conn
