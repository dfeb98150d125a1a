"""DownloadMonth: fetch one month's Parquet file, keep it only if it really is one; PublishedMonth: the
file at the source.

Beside the file, ``<file>.source.json`` records which version of the source it is, so a
re-published month can be told from the one already loaded (``luigi_tasks.sources``).
"""
from __future__ import annotations

import luigi

from luigi_tasks.base import Fetching, MonthTask
from luigi_tasks.config import parse_size, pipeline
from luigi_tasks.files import SidecarTarget, check_space, read_sidecar
from luigi_tasks.progress import Progress
from luigi_tasks.sources import RemoteFile, fetch

DEFAULT_URL_TEMPLATE = "https://d37ci6vzurychx.cloudfront.net/trip-data/{dataset}_tripdata_{month}.parquet"


def satisfies(info: dict, wanted: str | None) -> bool:
    """Whether a file described by the sidecar ``info`` is the version ``wanted`` ("" or None: any
    version), either exactly or as what the source served when that version was asked for."""
    return not wanted or wanted in (info.get("version"), info.get("requested"))


class PublishedMonth(luigi.ExternalTask):
    """The month's file at the source. Missing (not published yet, or never) -> luigi's missing-data exit code."""

    url = luigi.Parameter()

    def output(self) -> RemoteFile:
        return RemoteFile(self.url)

    def __str__(self) -> str:
        return f"Published file {self.url}"


class DownloadMonth(Fetching, MonthTask):
    """Download ``{dataset}_tripdata_{YYYY-MM}.parquet`` into ``{data_dir}/raw/{dataset}/``."""

    url_template = luigi.Parameter(default=DEFAULT_URL_TEMPLATE,
                                   description="source URL; {dataset} and {month} (YYYY-MM) are filled in")
    name_template = "Download {dataset} {month}"

    def requires(self) -> PublishedMonth:
        return PublishedMonth(url=self.url)

    def output(self) -> SidecarTarget:
        return SidecarTarget(str(self.raw_path()))

    @property
    def url(self) -> str:
        return self.url_template.format(dataset=self.dataset, month=self.ym)

    def local_version(self) -> str | None:
        return read_sidecar(self.raw_path()).get("version")

    def own_complete(self) -> bool:
        return super().own_complete() and satisfies(read_sidecar(self.raw_path()), self.source_version)

    def run(self) -> None:
        # No set_tracking_url(self.url): luigi's update resets the task's retry policy to the default.
        progress = Progress(self, f"{self}", None, "bytes")
        # Asked for a version (--refresh), the source may serve another one (another CDN edge): what was
        # fetched is what counts, noted as the answer to what was asked.
        note = {"requested": self.source_version} if self.source_version else None
        raw = self.raw_path()
        reserve = parse_size(pipeline().disk_reserve)
        info = fetch(self.url, raw, progress, self.stall_seconds(), note=note,
                     room=lambda size: check_space(raw.parent, size, f"{self} (the Parquet file)", reserve))
        progress.finish()
        self.set_status_message(f"{self}: {info['bytes']:,} bytes, {info['rows']:,} rows, "
                                f"version {info['version']}")
