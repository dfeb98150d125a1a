"""``python -m luigi_tasks <command>``: one command line for everything that is not a luigi task run.

Each command is a module of ``luigi_tasks.commands``; ``python -m luigi_tasks --help``
lists them. Every error is one line, ``error: <message>``: exit code 40 for a bad argument
or bad configuration (as ``[retcode] unhandled_exception`` for the luigi command), 2 for
any other expected failure (a server that cannot be reached, a wrong password).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from luigi_tasks.errors import ConfigError, IngestError

BAD_ARGUMENTS = 40
FAILED = 2

# name -> module in luigi_tasks.commands (its HELP is the one-line description)
COMMANDS = ("status", "runs", "cron", "notify", "disk", "blocks", "db", "scheduler")


def cli_main(run: Callable[[], int]) -> int:
    """Run a command: an expected failure becomes ``error: <message>`` on stderr and its exit code."""
    try:
        return run()
    except IngestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return BAD_ARGUMENTS if isinstance(exc, ConfigError) else FAILED


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a usage error as one line and exit code 40 (argparse prints the usage and exits 2)."""

    def error(self, message: str):
        self.exit(BAD_ARGUMENTS, f"error: {self.prog}: {message} (see --help)\n")


def parser() -> tuple[argparse.ArgumentParser, dict]:
    ap = OneLineParser(prog="python -m luigi_tasks",
                                 description="NYC TLC trip records into PostgreSQL with Luigi. Tasks run with "
                                             "`luigi --module luigi_tasks IngestMonth --month 2022-01`; "
                                             "everything else is one of these commands.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="command", parser_class=OneLineParser)
    modules = {}
    for name in COMMANDS:
        module = importlib.import_module(f"luigi_tasks.commands.{name}")
        module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.HELP))
        modules[name] = module
    return ap, modules


def main(argv: list[str] | None = None) -> int:
    ap, modules = parser()
    args, extra = ap.parse_known_args(sys.argv[1:] if argv is None else argv)
    module = modules[args.command]
    if extra and not getattr(module, "accepts_extra", False):
        ap.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    return cli_main(lambda: module.run(args))
