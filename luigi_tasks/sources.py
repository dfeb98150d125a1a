"""Reading the TLC's sources: http(s) and file URLs, their versions, and checks on what arrived.

A source's *version* (HTTP ETag / Last-Modified / Content-Length, or size and mtime for
``file://``) tells a re-published month from the one already fetched. Failures are
classified: a 5xx/429 answer, a refused, reset or short connection is transient (worth
another attempt); an error page, a truncated or unreadable file is permanent.
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
from collections.abc import Callable
from pathlib import Path

import luigi

from luigi_tasks.errors import ConfigError, PermanentError, TransientError
from luigi_tasks.files import atomic_file, write_error
from luigi_tasks.progress import Progress

CHUNK = 1 << 20
logger = logging.getLogger("luigi-interface")


def local_path(url: str) -> str:
    """The path a ``file:`` URL names: ``file:///abs/path``, ``file:/abs/path``, or ``file:relative/path``
    (relative to the working directory). ``file://name/path`` names a host, which is refused: it is
    almost always a relative path with one slash too many, whose first part would silently vanish."""
    parsed = urllib.parse.urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        raise ConfigError(f"file URL with a host part ({parsed.netloc!r}) in {url!r}: use file:///absolute/path "
                          "or file:relative/path")
    return urllib.request.url2pathname(parsed.path)


def source_info(url: str, headers=None) -> dict:
    """What identifies this version of the source: HTTP validators, or size+mtime of a file."""
    if url.startswith("file:"):
        st = os.stat(local_path(url))
        info = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    else:
        info = {"etag": headers.get("ETag"), "last_modified": headers.get("Last-Modified"),
                "content_length": headers.get("Content-Length")}
    digest = hashlib.sha1(json.dumps(info, sort_keys=True).encode()).hexdigest()[:12]
    return {"version": digest, **info}


def http_error(what: str, exc: urllib.error.HTTPError, url: str) -> PermanentError | TransientError:
    """A server error or rate limit may pass; any other refusal will be the same next time."""
    kind = TransientError if exc.code >= 500 or exc.code in (408, 429) else PermanentError
    return kind(f"{what}: HTTP {exc.code} {exc.reason} for {url}")


def connection_error(what: str, exc: BaseException, url: str) -> TransientError:
    reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
    return TransientError(f"{what}: {reason} for {url}")


def open_url(url: str, method: str = "GET", timeout: float = 60):
    """``urlopen`` with one-line, classified errors."""
    if url.startswith("file:"):   # urllib reads only absolute file URLs
        url = Path(local_path(url)).absolute().as_uri()
    try:
        return urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise http_error("download failed", exc, url) from exc
    except TimeoutError as exc:
        raise TransientError(f"download stalled: no answer for {timeout:g} s from {url}") from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise connection_error("download failed", exc, url) from exc


def probe(url: str) -> str | None:
    """The source's current version, without downloading it (a HEAD request); None if the source does
    not have the file (404, or the CDN's 403)."""
    if url.startswith("file:"):
        path = local_path(url)
        if not os.path.exists(path):
            return None
        try:
            return source_info(url)["version"]
        except OSError as exc:
            raise PermanentError(f"cannot read {url}: {exc.strerror}") from exc
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=30) as resp:
            return source_info(url, resp.headers)["version"]
    except urllib.error.HTTPError as exc:
        if exc.code in (403, 404):
            return None
        raise http_error("cannot ask the source", exc, url) from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise connection_error("cannot ask the source", exc, url) from exc


class RemoteFile(luigi.Target):
    """A file at a URL: exists if the source has it (HEAD 200), not if it answers 404/403."""

    def __init__(self, url: str) -> None:
        self.url = url

    def exists(self) -> bool:
        if self.url.startswith("file:"):
            return os.path.exists(local_path(self.url))
        try:
            with urllib.request.urlopen(urllib.request.Request(self.url, method="HEAD"), timeout=30):
                return True
        except urllib.error.HTTPError as exc:
            if exc.code in (403, 404):   # the CDN answers 403 for an object it does not have
                logger.warning("not published: %s answers HTTP %s %s", self.url, exc.code, exc.reason)
                return False
            raise http_error("cannot check", exc, self.url) from exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise connection_error("cannot check", exc, self.url) from exc


def fetch(url: str, dest: Path, progress: Progress | None = None, stall_timeout: float = 60,
          validate: Callable[[Path, str], int] | None = None, note: dict | None = None,
          room: Callable[[int], None] | None = None) -> dict:
    """Stream ``url`` (http, https or file) to ``dest`` atomically; return its source info and rows.

    A source that sends nothing for ``stall_timeout`` seconds (no answer, or a transfer that
    stops) fails as transient. ``validate(path, url) -> rows`` checks the bytes before the
    rename (default: Parquet). ``note`` is added to the sidecar. ``room(bytes)`` is called with the size
    the source announces before anything is written (a free-space check).
    """
    info: dict = {}
    with atomic_file(dest, sidecar_info=info) as tmp:   # the sidecar is written after the file: its commit point
        resp = open_url(url, timeout=stall_timeout)
        try:
            with resp, open(tmp, "wb") as out:
                info.update(source_info(url, resp.headers))
                length = resp.headers.get("Content-Length")
                expected = int(length) if length and length.isdigit() else None
                if room and expected is not None:
                    room(expected)
                if progress:
                    progress.total = expected
                received = 0
                while chunk := resp.read(CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    if progress:
                        progress.update(len(chunk))
        except TimeoutError as exc:
            raise TransientError(f"download stalled: no data for {stall_timeout:g} s from {url}") from exc
        except (http.client.HTTPException, OSError) as exc:
            if isinstance(exc, OSError) and write_error(exc, dest):
                raise write_error(exc, dest) from exc
            raise TransientError(f"download failed: {type(exc).__name__}: {exc} for {url}") from exc
        if expected is not None and received != expected:
            raise TransientError(f"download failed: received {received} of {expected} bytes from {url}")
        info.update(url=url, rows=(validate or validate_parquet)(tmp, url), bytes=received, **(note or {}))
    return info


def reject_error_page(path: Path, source: str, expected: str) -> None:
    """An HTML/XML error page saved under the data file's name is named as such."""
    with open(path, "rb") as fh:
        head = fh.read(256)
    if head.lstrip().startswith(b"<"):
        kind = "an XML" if head.lstrip().startswith(b"<?xml") else "an HTML"
        raise PermanentError(f"{source} returned {kind} page ({path.stat().st_size} bytes), not {expected}: "
                          f"{head[:80].decode('utf-8', 'replace').splitlines()[0]!r}")


def validate_parquet(path: Path, source: str) -> int:
    """Check that ``path`` is a readable, non-empty Parquet file; return its row count."""
    import pyarrow.parquet as pq

    reject_error_page(path, source, "Parquet")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(4)
        fh.seek(max(0, size - 4))
        tail = fh.read(4)
    if size < 12 or head[:4] != b"PAR1" or tail != b"PAR1":
        raise PermanentError(f"{source} is not a complete Parquet file ({size} bytes; missing PAR1 "
                          f"{'header' if head[:4] != b'PAR1' else 'footer'}): truncated or not Parquet")
    try:
        rows = pq.ParquetFile(path).metadata.num_rows
    except Exception as exc:  # pyarrow raises several types for a corrupt footer
        raise PermanentError(f"{source} has an unreadable Parquet footer: {exc}") from exc
    if rows <= 0:
        raise PermanentError(f"{source} is a Parquet file with no rows")
    return rows
