"""Run a command as a grandchild of the benchmark and report its own peak RSS.

Linux carries a process's peak RSS across fork and exec: a command the benchmark starts directly
reports at least the benchmark's own RSS at the fork (measured: a 400 MB parent makes `python -c pass`
report 413 MB; after generating a 15M-row month the benchmark was at ~370 MB, and every figure it
measured that way read ~370 MB). This small process forks the command itself, so the command starts
from this process's ~10 MB, and ``wait4`` gives the command's own peak, as ``/usr/bin/time`` does.

    python bench/peak.py RESULT.json COMMAND ARGS...   # exit code: the command's
"""
from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> int:
    result, cmd = argv[0], argv[1:]
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    with open(result, "w") as out:
        json.dump({"maxrss_kb": usage.ru_maxrss}, out)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
