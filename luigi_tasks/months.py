"""Months as ``datetime.date`` (the first of the month): parsing, arithmetic, ranges, windows."""
from __future__ import annotations

import datetime as dt
import re

from luigi_tasks.errors import ConfigError


def parse_month(text: str, what: str = "month") -> dt.date:
    """``YYYY-MM`` -> the first day of that month; anything else is a one-line error."""
    if not re.fullmatch(r"\d{4}-\d{2}", text or "") or not 1 <= int(text[5:]) <= 12:
        raise ConfigError(f"invalid {what} {text!r}: expected YYYY-MM, e.g. 2022-01")
    return dt.date(int(text[:4]), int(text[5:]), 1)


def add_months(month: dt.date, n: int) -> dt.date:
    index = month.year * 12 + month.month - 1 + n
    return dt.date(index // 12, index % 12 + 1, 1)


def month_range(start: dt.date, stop: dt.date) -> list[dt.date]:
    """Every month from ``start`` up to and excluding ``stop``."""
    months, month = [], start.replace(day=1)
    while month < stop:
        months.append(month)
        month = add_months(month, 1)
    return months


def latest_published(today: dt.date, lag: int) -> dt.date:
    """The newest month the TLC should have published ``lag`` months after it ended."""
    return add_months(today.replace(day=1), -lag)


def window(today: dt.date, lag: int, catch_up: int, since: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """[start, stop) of the months kept loaded: the latest published one and ``catch_up`` before
    it, or every month from ``since``."""
    stop = add_months(latest_published(today, lag), 1)
    return (since if since else add_months(stop, -catch_up)), stop
