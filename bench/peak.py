"""Run a command as a grandchild of the benchmark and report its own peak RSS.

Linux carries a process's peak RSS across fork and exec: a command the benchmark starts directly
reports at least the benchmark's own RSS at the fork (measured: a 400 MB parent makes `python -c pass`
report 413 MB; after generating a 15M-row month the benchmark was at ~370 MB, and every figure it
measured that way read ~370 MB). This small process forks the command itself, so the command starts
from this process's ~10 MB, and ``wait4`` gives the command's own peak, as ``/usr/bin/time`` does.

    python bench/peak.py [--timeout SECONDS] RESULT.json COMMAND ARGS...   # exit code: the command's

A command still running after ``--timeout`` seconds (default 3600) is killed, and the exit code is 124.
"""
from __future__ import annotations

import json
import os
import signal
import sys


def main(argv: list[str]) -> int:
    timeout = 3600
    if argv[0] == "--timeout":
        timeout, argv = int(argv[1]), argv[2:]
    result, cmd = argv[0], argv[1:]
    pid = os.fork()
    if pid == 0:
        try:
            os.setpgid(0, 0)   # its own group: a timeout stops the command's worker processes too
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    timed_out = []

    def overdue(signum, frame) -> None:
        print(f"peak.py: {cmd[0]} still running after {timeout} s: killed", file=sys.stderr)
        timed_out.append(True)
        os.killpg(pid, signal.SIGKILL)

    def forward(signum, frame) -> None:   # Ctrl-C or a kill of the benchmark reaches the command's group
        os.killpg(pid, signum)

    signal.signal(signal.SIGALRM, overdue)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    signal.alarm(timeout)
    _, status, usage = os.wait4(pid, 0)   # retried after a handler ran (PEP 475)
    signal.alarm(0)
    with open(result, "w") as out:
        json.dump({"maxrss_kb": usage.ru_maxrss}, out)
    return 124 if timed_out else os.waitstatus_to_exitcode(status)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
