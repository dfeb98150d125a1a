"""ParquetToCsv: normalise a TLC file to its table's columns and write it as CSV for COPY
(the conversion itself is ``luigi_tasks.parquet_csv``)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import luigi

from luigi_tasks.base import MonthTask
from luigi_tasks.config import parse_size, pipeline
from luigi_tasks.download import DownloadMonth, satisfies
from luigi_tasks.files import SidecarTarget, check_space, read_sidecar
from luigi_tasks.progress import Progress
from luigi_tasks.zones import DownloadZoneShapes

# Yellow files give coordinates instead of zones up to this month (2009-2010).
COORDINATES_UNTIL = dt.date(2011, 1, 1)


class ParquetToCsv(MonthTask):
    """Write ``{data_dir}/csv/{dataset}/{dataset}_tripdata_{YYYY-MM}.csv`` in the table's column order."""

    drop_unknown_columns = luigi.BoolParameter(
        default=False, description="ignore file columns the table does not know instead of failing")
    threads = luigi.IntParameter(default=2, significant=False, description="conversion threads")
    bad_rows = luigi.ChoiceParameter(choices=["fail", "skip"], var_type=str, default="fail", significant=False,
                                     description="a row that cannot be stored: fail the month, or skip and count it")
    name_template = "Convert {dataset} {month}"

    def requires(self) -> dict[str, luigi.Task]:
        deps: dict[str, luigi.Task] = {"raw": DownloadMonth(**self.month_args())}
        if self.dataset == "yellow" and self.month < COORDINATES_UNTIL:   # coordinates, no zones
            deps["zones"] = DownloadZoneShapes()
        return deps

    def output(self) -> SidecarTarget:
        return SidecarTarget(str(self.csv_path()))

    def local_version(self) -> str | None:
        return read_sidecar(self.csv_path()).get("version")

    def own_complete(self) -> bool:
        if not super().own_complete():
            return False
        # Built from the raw file now on disk (or, if that was cleaned up, from the one asked for).
        wanted = self.source_version or self.requires()["raw"].local_version()
        return satisfies(read_sidecar(self.csv_path()), wanted)

    def run(self) -> None:
        if self.own_complete():
            # Run because the raw file expired: fetched again and identical, it changes nothing here.
            print(f"{self}: source unchanged (version {self.local_version()}): the CSV is current, not rebuilt")
            return
        # Imported here: pyarrow is only needed once a month is converted, and the package
        # (imported by every `python -m luigi_tasks` command) starts faster without it.
        from luigi_tasks.parquet_csv import estimate_csv_bytes, parquet_to_csv

        zones = None
        if "zones" in self.input():
            from luigi_tasks.zone_index import ZoneIndex

            zones = ZoneIndex.load(Path(self.input()["zones"].path))
        progress = Progress(self, f"{self}", None, "rows")
        raw = self.raw_path()
        check_space(self.csv_path().parent, estimate_csv_bytes(raw, self.dataset), f"{self} (the CSV file)",
                    parse_size(pipeline().disk_reserve))
        rows = parquet_to_csv(raw, self.csv_path(), self.dataset, self.month, self.drop_unknown_columns,
                              progress, sidecar_info=read_sidecar(raw), threads=self.threads, zones=zones,
                              bad_rows=self.bad_rows)
        progress.finish()
        self.set_status_message(f"{self}: {rows:,} rows written")
