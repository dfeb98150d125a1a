"""Secrets that never show themselves: Prefect's ``SecretStr``, and a redactor for text.

Every secret value a block loads is remembered (in this process only), so that text
on its way to a person (a log record, a failure explanation sent to luigid, a
notification, the run history) can be scrubbed of it even when it arrived inside a
chained exception from a driver.
"""
from __future__ import annotations

import threading

MASK = "**********"
# Shorter values cannot be told from ordinary text ("x" would mask every x in a log line); a
# password that short is refused by any sensible server anyway.
MIN_REDACTED = 4

_known: set[str] = set()
_lock = threading.Lock()


class SecretStr:
    """A string that never shows itself by accident (Prefect's/pydantic's SecretStr)."""

    def __init__(self, value: str | None) -> None:
        self._value = value or None
        if self._value and len(self._value) >= MIN_REDACTED:
            with _lock:
                _known.add(self._value)

    def get_secret_value(self) -> str | None:
        return self._value

    def __repr__(self) -> str:
        return f"SecretStr('{MASK}')" if self._value else "SecretStr(None)"

    def __str__(self) -> str:
        return MASK if self._value else ""


def redact(text: str) -> str:
    """``text`` with every secret loaded in this process replaced by the mask."""
    if not text or not _known:
        return text
    with _lock:
        secrets = sorted(_known, key=len, reverse=True)   # a longer secret may contain a shorter one
    for value in secrets:
        if value in text:
            text = text.replace(value, MASK)
    return text
