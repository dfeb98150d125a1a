"""The errors users see, and how to show them.

Every expected failure is an :class:`IngestError` whose message is one line that names the
problem; ``luigi_tasks.logs`` prints it without the traceback, which is still chained
(``raise ... from exc``) for DEBUG logs and luigid's failure explanation.

Two kinds, because a retry policy must tell them apart (as dlt's destinations do):

- :class:`TransientError`: the same call may succeed later (network, lost connection,
  server busy, a stalled transfer). Retried.
- :class:`PermanentError`: it will fail the same way every time (a bad file, a schema or
  type error, a row-count mismatch, bad configuration). Never retried.
"""
from __future__ import annotations


class IngestError(Exception):
    """An expected failure; its message is the whole explanation."""

    transient = False


class PermanentError(IngestError):
    """Retrying cannot help: bad input, a bad file, a row-count mismatch."""


class ConfigError(PermanentError):
    """Bad configuration or arguments: a block, a table name, a setting."""


class TransientError(IngestError):
    """The same call may succeed later: network, lost connection, server busy."""

    transient = True


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's text (psycopg2 appends DETAIL/HINT lines)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__
