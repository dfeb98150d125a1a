"""The one exception type users see: its message is the whole explanation."""


class IngestError(Exception):
    """An expected failure (bad input, unreachable source or database, bad config).

    Its message is one line that names the problem; ``luigi_tasks.logs`` prints it
    without a traceback, since a traceback would only bury it.
    """


def cli_main(run) -> int:
    """Run a command-line entry point: an IngestError becomes ``error: <message>`` and exit code 2."""
    import sys

    try:
        return run()
    except IngestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
