"""The commands of ``python -m luigi_tasks``: one module each, with ``add_arguments(parser)`` and
``run(args) -> exit code`` (and ``accepts_extra = True`` if unknown arguments go to luigi)."""
