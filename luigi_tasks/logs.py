"""Logging: expected failures (IngestError) as one line, everything else with its traceback."""
from __future__ import annotations

import logging
import re

from luigi_tasks.errors import IngestError

# luigi logs an error in complete()/requires() as text: "...:\n<traceback>" ending in "module.Class: message".
_TEXT_TRACEBACK = re.compile(r"\s*\nTraceback \(most recent call last\):\n.*\n(luigi_tasks\.[\w.]+): ([^\n]*)\s*$",
                             re.S)


class OneLineErrors(logging.Filter):
    """Fold an IngestError's message into the record and drop the traceback that would bury it."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, IngestError):
            record.msg = f"{record.getMessage()} -- {exc}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        elif isinstance(record.msg, str) and "Traceback" in record.msg and not record.args:
            record.msg = _TEXT_TRACEBACK.sub(lambda m: f" -- {m.group(2)}", record.msg)
        return True


def install() -> None:
    for name in ("luigi-interface", "luigi", "luigi.scheduler"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, OneLineErrors) for f in logger.filters):
            logger.addFilter(OneLineErrors())
