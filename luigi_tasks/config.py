"""Settings shared by every task: ``[pipeline]`` in luigi.cfg or ``--pipeline-...`` on the command line."""
from __future__ import annotations

from pathlib import Path

import luigi


class pipeline(luigi.Config):  # noqa: N801 - the class name is the luigi.cfg section name
    data_dir = luigi.Parameter(default="data", description="where raw Parquet and CSV files are kept")
    log_prints = luigi.BoolParameter(default=True, parsing=luigi.BoolParameter.EXPLICIT_PARSING,
                                     description="send print() inside a task's run() to the log (Prefect)")


def data_path(*parts: str) -> Path:
    return Path(pipeline().data_dir).joinpath(*parts)
