"""Retry policy, as Prefect's ``retries``, ``retry_delay_seconds`` (a list), ``exponential_backoff``,
``retry_jitter_factor`` and ``retry_condition_fn``, decided per failure.

A :class:`~luigi_tasks.errors.PermanentError` is never retried: an HTML page saved as
Parquet or a row-count mismatch fails the same way every time, so the run ends at once.
A :class:`~luigi_tasks.errors.TransientError` is retried, and so is an unexpected
exception (a bug or a library error we have not classified): as in Prefect, trying again
costs little, and ``retries`` bounds it.
"""
from __future__ import annotations

import dataclasses
import random

from luigi_tasks.errors import ConfigError, PermanentError

BACKOFFS = ("", "none", "exponential")


def parse_delays(text: str) -> tuple[float, ...]:
    """``"10, 60, 300"`` -> (10.0, 60.0, 300.0): seconds before the 1st, 2nd, 3rd... retry."""
    try:
        delays = tuple(float(part) for part in str(text).replace(",", " ").split())
    except ValueError as exc:
        raise ConfigError(f"invalid retry_delays {text!r}: seconds, e.g. '10' or '10, 60, 300'") from exc
    if not delays or any(d < 0 for d in delays):
        raise ConfigError(f"invalid retry_delays {text!r}: seconds, e.g. '10' or '10, 60, 300'")
    return delays


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    retries: int = 0
    delays: tuple[float, ...] = (10.0,)
    backoff: str = ""
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ConfigError(f"invalid retries {self.retries}: 0 or more")
        if self.backoff not in BACKOFFS:
            raise ConfigError(f"invalid retry_backoff {self.backoff!r}: empty or 'exponential'")
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"invalid retry_jitter {self.jitter}: a fraction from 0 to 1")

    @property
    def attempts(self) -> int:
        return self.retries + 1

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """After ``attempt`` (1-based) failed with ``exc``: is there another attempt?"""
        return attempt < self.attempts and isinstance(exc, Exception) and not isinstance(exc, PermanentError)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed ``attempt`` (1-based) before the next one."""
        if self.backoff == "exponential":
            base = self.delays[0] * 2 ** (attempt - 1)
        else:
            base = self.delays[min(attempt, len(self.delays)) - 1]
        if self.jitter:
            base *= 1 + (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, base)
