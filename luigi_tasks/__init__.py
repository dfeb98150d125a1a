"""NYC TLC trip records into PostgreSQL with Luigi: ``luigi --module luigi_tasks IngestMonth --month 2022-01``.

Importing the package registers its tasks with luigi (what ``--module luigi_tasks`` needs);
pyarrow is imported only when a month is converted, so the command line starts quickly.
"""
import warnings

# `python -m luigi_tasks.blocks` runs a module this package has already imported (to register
# the tasks for `luigi --module luigi_tasks`); runpy's warning about that is noise for users.
warnings.filterwarnings("ignore", message=r".*found in sys\.modules after import of package 'luigi_tasks'",
                        category=RuntimeWarning)

from luigi_tasks.config import bootstrap as _read_config  # noqa: E402

_read_config()   # before any task or config section reads a value

from luigi_tasks import hooks, notifications  # noqa: E402,F401  (run-end handlers, registered on import)
from luigi_tasks.convert import ParquetToCsv  # noqa: E402
from luigi_tasks.download import DownloadMonth, PublishedMonth  # noqa: E402
from luigi_tasks.flows import IngestMonth, IngestRange  # noqa: E402
from luigi_tasks.load import LoadMonth  # noqa: E402
from luigi_tasks.logs import install as _install_logging  # noqa: E402
from luigi_tasks.runs import install as _record_runs  # noqa: E402
from luigi_tasks.zones import DownloadZones, LoadZones  # noqa: E402

_install_logging()
_record_runs()   # every luigi invocation with these tasks is a run (luigi_tasks.runs)

__all__ = ["DownloadMonth", "PublishedMonth", "ParquetToCsv", "LoadMonth", "IngestMonth", "IngestRange",
           "DownloadZones", "LoadZones"]
