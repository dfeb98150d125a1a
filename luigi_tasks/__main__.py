"""``python -m luigi_tasks status ...``, ``python -m luigi_tasks cron ...``."""
import sys

COMMANDS = {"status": "luigi_tasks.status", "cron": "luigi_tasks.cron"}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(f"usage: python -m luigi_tasks {{{','.join(COMMANDS)}}} [--help]", file=sys.stderr)
        return 2
    import importlib

    return importlib.import_module(COMMANDS[sys.argv[1]]).main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
