"""Run hooks (Prefect's ``on_failure`` / ``on_completion``): your function, once per run.

``[hooks] on_failure``, ``on_success`` and ``on_completion`` name a function as
``package.module:function``. It is called once when a run ends (``on_failure`` for Failed,
MissingData and Cancelled runs, ``on_success`` for Completed ones, ``on_completion`` for every
run) with the run's summary, a dict::

    {"run_id": "3e6170f36967", "state": "Failed", "exit_code": 30, "what": "Ingest yellow 2022-01",
     "error": "Download yellow 2022-01: download failed: HTTP 503 ...", "months": ["yellow 2022-01"],
     "rows": 2463931, "tasks": {"completed": 3, "failed": 1, ...}, "started_at": "...", "ended_at": "...",
     "host": "...", "pid": 4242, "command": "luigi --module luigi_tasks ...", "log": "/path/to/log"}

Hooks are luigi event handlers (``luigi_tasks.runs.RunEvent``): a hook that raises is logged
by luigi, and the run's outcome does not change.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable

import luigi

from luigi_tasks.config import hooks as hooks_config
from luigi_tasks.errors import ConfigError
from luigi_tasks.run_store import RunRecord
from luigi_tasks.runs import RunEvent


def load_hook(spec: str) -> Callable[[dict], object]:
    """``package.module:function`` -> the function."""
    module_name, sep, name = spec.strip().partition(":")
    if not sep or not module_name or not name:
        raise ConfigError(f"invalid hook {spec!r}: use package.module:function")
    try:
        function = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"hook {spec!r} cannot be loaded: {exc}") from exc
    if not callable(function):
        raise ConfigError(f"hook {spec!r} is not a function")
    return function


def _call(setting: str, record: RunRecord) -> None:
    spec = getattr(hooks_config(), setting)
    if spec:
        load_hook(spec)(record.as_json())


@luigi.Task.event_handler(RunEvent.FAILURE)
def on_failure(record: RunRecord) -> None:
    _call("on_failure", record)


@luigi.Task.event_handler(RunEvent.SUCCESS)
def on_success(record: RunRecord) -> None:
    _call("on_success", record)


@luigi.Task.event_handler(RunEvent.COMPLETION)
def on_completion(record: RunRecord) -> None:
    _call("on_completion", record)
