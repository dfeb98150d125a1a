"""Run notifications (Prefect's notifications and automations): one message per run, when it ends.

``[notify] block`` names an ``apprise`` block of ``config/blocks.yaml`` (empty: no
notifications; ``--notify-block NAME`` on the command line) and ``[notify] on`` which run
endings send one: ``failure`` (Failed, Cancelled), ``missing_data``, ``success``. The
message names the run, what ran, its state and exit code, the failing task's one-line error
and where the log is; it is sent once the run has ended, so a task that failed and then
succeeded on retry sends nothing. A message that cannot be delivered is a warning in the log;
it never changes the run's exit code. No secret is ever in a message (every line is scrubbed).
"""
from __future__ import annotations

import logging

import luigi

from luigi_tasks.blocks import AppriseNotifications
from luigi_tasks.config import notify as notify_config
from luigi_tasks.errors import ConfigError, IngestError
from luigi_tasks.run_store import RunRecord
from luigi_tasks.runs import RunEvent
from luigi_tasks.secret import redact

logger = logging.getLogger("luigi-interface")

ENDINGS = {"failure": {"Failed", "Cancelled", "Crashed"}, "missing_data": {"MissingData"}, "success": {"Completed"}}


def states_for(on: str) -> set[str]:
    """``"failure, missing_data"`` -> the run states that send a notification."""
    names = [n.strip() for n in on.replace(",", " ").split() if n.strip()]
    unknown = [n for n in names if n not in ENDINGS]
    if unknown:
        raise ConfigError(f"invalid [notify] on {on!r}: choose from {', '.join(ENDINGS)}")
    return set().union(*(ENDINGS[n] for n in names)) if names else set()


def message(record: RunRecord) -> tuple[str, str]:
    """The title and body of a run's notification."""
    title = f"{record.state}: {record.what}"
    lines = [f"run {record.run_id}: {record.what}",
             f"state: {record.state}, exit code {record.exit_code}"]
    if record.error:
        lines.append(f"error: {record.error}")
    if record.months:
        lines.append(f"loaded: {', '.join(record.months)} ({record.rows:,} rows)")
    lines.append(f"log: {record.log or f'the stderr of pid {record.pid} on {record.host}'}")
    started = record.started_at.strftime("%Y-%m-%d %H:%M:%S %Z")
    ended = record.ended_at.strftime("%Y-%m-%d %H:%M:%S %Z") if record.ended_at else "-"
    lines.append(f"started {started}, ended {ended}, on {record.host}")
    lines.append(f"command: {record.command}")
    return redact(f"[luigi_tasks] {title}"), redact("\n".join(lines))


def send(block_name: str, record: RunRecord) -> list[tuple[str, bool]]:
    block = AppriseNotifications.load(block_name)
    title, body = message(record)
    return block.notify(title, body)


@luigi.Task.event_handler(RunEvent.COMPLETION)
def notify_run(record: RunRecord) -> None:
    """At the end of every run: send its notification if ``[notify]`` asks for one."""
    cfg = notify_config()
    if not cfg.block:
        return
    try:
        if record.state not in states_for(cfg.on):
            return
        results = send(cfg.block, record)
    except IngestError as exc:
        logger.warning("run %s: notification not sent: %s", record.run_id, exc)
        return
    failed = [shown for shown, delivered in results if not delivered]
    for shown in failed:
        logger.warning("run %s: notification to %s could not be delivered", record.run_id, shown)
    logger.info("run %s: notification delivered to %d of %d destination(s) of block %r", record.run_id,
                len(results) - len(failed), len(results), cfg.block)
