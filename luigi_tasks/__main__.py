"""``python -m luigi_tasks <command>``: see ``luigi_tasks.cli``."""
import sys

from luigi_tasks.cli import main

if __name__ == "__main__":
    sys.exit(main())
