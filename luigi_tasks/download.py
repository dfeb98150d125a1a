"""DownloadMonth: fetch one month's Parquet file, keep it only if it really is one.

Beside the file, ``<file>.source.json`` records which version of the source it is
(HTTP ETag / Last-Modified / Content-Length, or size and mtime for file://), so a
re-published month can be told from the one already loaded.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import luigi
import pyarrow.parquet as pq

from luigi_tasks.errors import IngestError
from luigi_tasks.files import atomic_file, write_error
from luigi_tasks.progress import Progress
from luigi_tasks.tasks import MonthTask

DEFAULT_URL_TEMPLATE = "https://d37ci6vzurychx.cloudfront.net/trip-data/{dataset}_tripdata_{month}.parquet"
CHUNK = 1 << 20
logger = logging.getLogger("luigi-interface")


def _local_path(url: str) -> str:
    return urllib.request.url2pathname(urllib.parse.urlparse(url).path)


def source_info(url: str, headers=None) -> dict:
    """What identifies this version of the source: HTTP validators, or size+mtime of a file."""
    if url.startswith("file:"):
        st = os.stat(_local_path(url))
        info = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    else:
        info = {"etag": headers.get("ETag"), "last_modified": headers.get("Last-Modified"),
                "content_length": headers.get("Content-Length")}
    digest = hashlib.sha1(json.dumps(info, sort_keys=True).encode()).hexdigest()[:12]
    return {"version": digest, **info}


def _open(url: str, method: str = "GET", timeout: float = 60):
    try:
        return urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise IngestError(f"download failed: HTTP {exc.code} {exc.reason} for {url}") from None
    except urllib.error.URLError as exc:
        raise IngestError(f"download failed: {exc.reason} for {url}") from None
    except (http.client.HTTPException, OSError) as exc:
        raise IngestError(f"download failed: {type(exc).__name__}: {exc} for {url}") from None


def probe(url: str) -> str:
    """The source's current version, without downloading it (a HEAD request)."""
    if url.startswith("file:"):
        try:
            return source_info(url)["version"]
        except OSError as exc:
            raise IngestError(f"cannot read {url}: {exc.strerror}") from None
    with _open(url, "HEAD", timeout=30) as resp:
        return source_info(url, resp.headers)["version"]


class RemoteFile(luigi.Target):
    """A file at a URL: exists if the source has it (HEAD 200), not if it answers 404/403."""

    def __init__(self, url: str) -> None:
        self.url = url

    def exists(self) -> bool:
        if self.url.startswith("file:"):
            return os.path.exists(_local_path(self.url))
        try:
            with urllib.request.urlopen(urllib.request.Request(self.url, method="HEAD"), timeout=30):
                return True
        except urllib.error.HTTPError as exc:
            if exc.code in (403, 404):   # the CDN answers 403 for an object it does not have
                logger.warning("not published: %s answers HTTP %s %s", self.url, exc.code, exc.reason)
                return False
            raise IngestError(f"cannot check {self.url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise IngestError(f"cannot check {self.url}: {reason}") from None


class PublishedMonth(luigi.ExternalTask):
    """The month's file at the source. Missing (not published yet, or never) -> luigi's missing-data exit code."""

    url = luigi.Parameter()

    def output(self) -> RemoteFile:
        return RemoteFile(self.url)

    def __str__(self) -> str:
        return f"Published file {self.url}"


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".source.json")


def read_sidecar(path: Path) -> dict:
    try:
        return json.loads(sidecar(path).read_text())
    except (OSError, ValueError):
        return {}


def write_sidecar(path: Path, info: dict) -> None:
    with atomic_file(sidecar(path)) as tmp:
        tmp.write_text(json.dumps(info, indent=1, sort_keys=True))


def fetch(url: str, dest: Path, progress: Progress | None = None, timeout: float = 60,
          validate=None) -> dict:
    """Stream ``url`` (http, https or file) to ``dest`` atomically; return its source info and rows.

    ``validate(path, url) -> rows`` checks the bytes before the rename (default: Parquet).
    """
    with atomic_file(dest) as tmp:
        resp = _open(url, timeout=timeout)
        try:
            with resp, open(tmp, "wb") as out:
                info = source_info(url, resp.headers)
                length = resp.headers.get("Content-Length")
                expected = int(length) if length and length.isdigit() else None
                if progress:
                    progress.total = expected
                received = 0
                while chunk := resp.read(CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    if progress:
                        progress.update(len(chunk))
        except (http.client.HTTPException, OSError) as exc:
            if isinstance(exc, OSError) and write_error(exc, dest):
                raise write_error(exc, dest) from None
            raise IngestError(f"download failed: {type(exc).__name__}: {exc} for {url}") from None
        if expected is not None and received != expected:
            raise IngestError(f"download failed: received {received} of {expected} bytes from {url}")
        info.update(url=url, rows=(validate or validate_parquet)(tmp, url), bytes=received)
        write_sidecar(dest, info)   # before the rename: a finished file always has its version beside it
    return info


def reject_error_page(path: Path, source: str, expected: str) -> None:
    """An HTML/XML error page saved under the data file's name is named as such."""
    with open(path, "rb") as fh:
        head = fh.read(256)
    if head.lstrip().startswith(b"<"):
        kind = "an XML" if head.lstrip().startswith(b"<?xml") else "an HTML"
        raise IngestError(f"{source} returned {kind} page ({path.stat().st_size} bytes), not {expected}: "
                          f"{head[:80].decode('utf-8', 'replace').splitlines()[0]!r}")


def validate_parquet(path: Path, source: str) -> int:
    """Check that ``path`` is a readable, non-empty Parquet file; return its row count."""
    reject_error_page(path, source, "Parquet")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(4)
        fh.seek(max(0, size - 4))
        tail = fh.read(4)
    if size < 12 or head[:4] != b"PAR1" or tail != b"PAR1":
        raise IngestError(f"{source} is not a complete Parquet file ({size} bytes; missing PAR1 "
                          f"{'header' if head[:4] != b'PAR1' else 'footer'}): truncated or not Parquet")
    try:
        rows = pq.ParquetFile(path).metadata.num_rows
    except Exception as exc:  # pyarrow raises several types for a corrupt footer
        raise IngestError(f"{source} has an unreadable Parquet footer: {exc}") from None
    if rows <= 0:
        raise IngestError(f"{source} is a Parquet file with no rows")
    return rows


class DownloadMonth(MonthTask):
    """Download ``{dataset}_tripdata_{YYYY-MM}.parquet`` into ``{data_dir}/raw/{dataset}/``."""

    url_template = luigi.Parameter(default=DEFAULT_URL_TEMPLATE,
                                   description="source URL; {dataset} and {month} (YYYY-MM) are filled in")
    name_template = "Download {dataset} {month}"

    def requires(self) -> PublishedMonth:
        return PublishedMonth(url=self.url)

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(self.raw_path()))

    @property
    def url(self) -> str:
        return self.url_template.format(dataset=self.dataset, month=self.ym)

    def local_version(self) -> str | None:
        return read_sidecar(self.raw_path()).get("version")

    def own_complete(self) -> bool:
        return super().own_complete() and self.source_version in ("", self.local_version())

    def run(self) -> None:
        # No set_tracking_url(self.url): luigi's update resets the task's retry policy to the default.
        progress = Progress(self, f"{self}", None, "bytes")
        info = fetch(self.url, self.raw_path(), progress)
        progress.finish()
        self.set_status_message(f"{self}: {info['bytes']:,} bytes, {info['rows']:,} rows, "
                                f"version {info['version']}")
