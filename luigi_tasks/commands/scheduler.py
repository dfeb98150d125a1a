"""``python -m luigi_tasks scheduler start|stop|status``: luigid on 127.0.0.1 for this project."""
from __future__ import annotations

import argparse
import json

from luigi_tasks.scheduler import Scheduler

HELP = "the central scheduler luigid: start, stop, status (exit 3 when stopped)"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("action", choices=["start", "stop", "status"])
    ap.add_argument("--address", help="listening address (default [luigid] address: 127.0.0.1)")
    ap.add_argument("--port", type=int, help="port (default [luigid] port: 8082)")
    ap.add_argument("--state-dir", help="state, logs, pid file (default [luigid] state_dir: data/scheduler)")
    ap.add_argument("--json", action="store_true", help="status as JSON")


def run(args: argparse.Namespace) -> int:
    sched = Scheduler.from_config(address=args.address, port=args.port, state_dir=args.state_dir)
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
