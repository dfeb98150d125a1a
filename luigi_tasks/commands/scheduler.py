"""``python -m luigi_tasks scheduler start|stop|status``: luigid on 127.0.0.1 for this project."""
from __future__ import annotations

import argparse
import json

from luigi_tasks.errors import ConfigError
from luigi_tasks.scheduler import Scheduler

HELP = "the central scheduler luigid: start, stop, status (exit 3 when stopped), enable DISABLED tasks"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("action", choices=["start", "stop", "status", "enable"])
    ap.add_argument("task_ids", nargs="*", help="enable: the DISABLED task ids (luigid's, as a failed run names them)")
    ap.add_argument("--all", action="store_true", help="enable: every DISABLED task")
    ap.add_argument("--address", help="listening address (default [luigid] address: 127.0.0.1)")
    ap.add_argument("--port", type=int, help="port (default [luigid] port: 8082)")
    ap.add_argument("--state-dir", help="state, logs, pid file (default [luigid] state_dir: data/scheduler)")
    ap.add_argument("--json", action="store_true", help="status as JSON")


def run(args: argparse.Namespace) -> int:
    sched = Scheduler.from_config(address=args.address, port=args.port, state_dir=args.state_dir)
    if args.action == "enable":
        if bool(args.task_ids) == args.all:
            raise ConfigError("scheduler enable: name the DISABLED task ids, or give --all")
        enabled = sched.enable(args.task_ids)
        print(f"re-enabled {len(enabled)} task(s) in luigid at {sched.url}" +
              "".join(f"\n  {task_id}" for task_id in enabled))
        return 0
    if args.task_ids or args.all:
        raise ConfigError(f"scheduler {args.action} takes no task ids")
    if args.action == "start":
        pid = sched.start()
        print(f"luigid running (pid {pid}): visualizer {sched.status()['visualizer']}")
    elif args.action == "stop":
        print("luigid stopped" if sched.stop() else "luigid was not running")
    else:
        status = sched.status()
        if args.json:
            print(json.dumps(status))
        else:
            state = f"running (pid {status['pid']})" if status["running"] else "stopped"
            print(f"luigid {state}: {status['url']}")
        return 0 if status["running"] else 3
    return 0
