"""DownloadMonth: fetch one month's Parquet file, keep it only if it really is one."""
from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from pathlib import Path

import luigi
import pyarrow.parquet as pq

from luigi_tasks.errors import IngestError
from luigi_tasks.files import atomic_file
from luigi_tasks.progress import Progress
from luigi_tasks.tasks import MonthTask

DEFAULT_URL_TEMPLATE = "https://d37ci6vzurychx.cloudfront.net/trip-data/{dataset}_tripdata_{month}.parquet"
CHUNK = 1 << 20


def fetch(url: str, dest: Path, progress: Progress | None = None, timeout: float = 60) -> int:
    """Stream ``url`` (http, https or file) to ``dest`` atomically; return the file's row count."""
    with atomic_file(dest) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
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
        except urllib.error.HTTPError as exc:
            raise IngestError(f"download failed: HTTP {exc.code} {exc.reason} for {url}") from None
        except urllib.error.URLError as exc:
            raise IngestError(f"download failed: {exc.reason} for {url}") from None
        except (http.client.HTTPException, OSError) as exc:
            raise IngestError(f"download failed: {type(exc).__name__}: {exc} for {url}") from None
        if expected is not None and received != expected:
            raise IngestError(f"download failed: received {received} of {expected} bytes from {url}")
        return validate_parquet(tmp, url)


def validate_parquet(path: Path, source: str) -> int:
    """Check that ``path`` is a readable, non-empty Parquet file; return its row count."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(256)
        fh.seek(max(0, size - 4))
        tail = fh.read(4)
    if head.lstrip().startswith(b"<"):
        kind = "an XML" if head.lstrip().startswith(b"<?xml") else "an HTML"
        raise IngestError(f"{source} returned {kind} page ({size} bytes), not Parquet: "
                          f"{head[:80].decode('utf-8', 'replace').split(chr(10))[0]!r}")
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

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(self.raw_path()))

    @property
    def url(self) -> str:
        return self.url_template.format(dataset=self.dataset, month=self.ym)

    def run(self) -> None:
        progress = Progress(self, f"download {self.url}", None, "bytes")
        rows = fetch(self.url, Path(self.output().path), progress)
        progress.finish()
        self.set_status_message(f"downloaded {progress.done:,} bytes, {rows:,} rows")

