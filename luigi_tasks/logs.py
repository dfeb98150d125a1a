"""Logging: expected failures (IngestError) as one line, everything else with its traceback."""
from __future__ import annotations

import logging

from luigi_tasks.errors import IngestError


class OneLineErrors(logging.Filter):
    """Fold an IngestError's message into the record and drop the traceback that would bury it."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, IngestError):
            record.msg = f"{record.getMessage()} -- {exc}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def install() -> None:
    for name in ("luigi-interface", "luigi", "luigi.scheduler"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, OneLineErrors) for f in logger.filters):
            logger.addFilter(OneLineErrors())
