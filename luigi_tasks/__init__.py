"""NYC TLC trip records into PostgreSQL with Luigi: ``luigi --module luigi_tasks IngestMonth --month 2022-01``."""
from luigi_tasks.convert import ParquetToCsv
from luigi_tasks.download import DownloadMonth
from luigi_tasks.flows import IngestMonth
from luigi_tasks.load import LoadMonth
from luigi_tasks.logs import install as _install_logging

_install_logging()

__all__ = ["DownloadMonth", "ParquetToCsv", "LoadMonth", "IngestMonth"]
