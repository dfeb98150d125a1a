"""ParquetToCsv: normalise a TLC file to its table's columns and write it as CSV for COPY
(the conversion itself is ``luigi_tasks.parquet_csv``)."""
from __future__ import annotations

import luigi

from luigi_tasks.base import MonthTask
from luigi_tasks.download import DownloadMonth, satisfies
from luigi_tasks.files import SidecarTarget, read_sidecar
from luigi_tasks.progress import Progress


class ParquetToCsv(MonthTask):
    """Write ``{data_dir}/csv/{dataset}/{dataset}_tripdata_{YYYY-MM}.csv`` in the table's column order."""

    drop_unknown_columns = luigi.BoolParameter(
        default=False, description="ignore file columns the table does not know instead of failing")
    threads = luigi.IntParameter(default=2, significant=False, description="conversion threads")
    name_template = "Convert {dataset} {month}"

    def requires(self) -> DownloadMonth:
        return DownloadMonth(**self.month_args())

    def output(self) -> SidecarTarget:
        return SidecarTarget(str(self.csv_path()))

    def local_version(self) -> str | None:
        return read_sidecar(self.csv_path()).get("version")

    def own_complete(self) -> bool:
        if not super().own_complete():
            return False
        # Built from the raw file now on disk (or, if that was cleaned up, from the one asked for).
        wanted = self.source_version or self.requires().local_version()
        return satisfies(read_sidecar(self.csv_path()), wanted)

    def run(self) -> None:
        if self.own_complete():
            # Run because the raw file expired: fetched again and identical, it changes nothing here.
            print(f"{self}: source unchanged (version {self.local_version()}): the CSV is current, not rebuilt")
            return
        # Imported here: pyarrow is only needed once a month is converted, and the package
        # (imported by every `python -m luigi_tasks` command) starts faster without it.
        from luigi_tasks.parquet_csv import parquet_to_csv

        progress = Progress(self, f"{self}", None, "rows")
        raw = self.raw_path()
        rows = parquet_to_csv(raw, self.csv_path(), self.dataset, self.month, self.drop_unknown_columns,
                              progress, sidecar_info=read_sidecar(raw), threads=self.threads)
        progress.finish()
        self.set_status_message(f"{self}: {rows:,} rows written")
