"""Download an ISO over HTTP(S) into the cache, verified, resuming a cut transfer.

A download streams into ``<name>.part`` (its validators in ``<name>.part.json``)
beside the final file, so a cut download resumes in the next run: ``Range`` plus
``If-Range`` so a changed remote restarts instead of being spliced onto old bytes.
Only the standard library is used (urllib honours the ``*_proxy`` variables); it is
imported only when a download is needed, since most builds read a local ISO.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from .. import __version__
from ..errors import ChecksumMismatch, FetchError, IncompleteDownload
from ..fsutil import CHUNK, read_json, write_json_atomic
from ..log import Progress, info, warn
from .isocache import FetchResult, check_size, part_file, pin_sha256, show_path, sidecar

USER_AGENT = f"aero-virtio-media/{__version__} (python-urllib)"
MAX_BACKOFF = 30.0
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)$")



@dataclass(frozen=True)
class _Validator:
    """What identifies the remote representation the .part came from."""

    etag: str | None = None
    last_modified: str | None = None

    @property
    def if_range(self) -> str | None:
        # If-Range needs a strong validator (RFC 9110 13.1.5): a weak ETag could splice two versions.
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified


class _Retry(Exception):
    """A transient failure: connection error, timeout, 5xx or a short body."""

    def __init__(self, kind: str, reason: str, *, free: bool = False) -> None:
        super().__init__(reason)
        self.kind = kind        # "network" | "short" | "status" | "restart"
        self.reason = reason
        self.free = free        # does not count against the retry budget (416 restart)


class _PartFile:
    """The ``.part`` file, its validator sidecar and a running hash of its bytes.

    The hash is kept in step with the file so a finished download needs no second
    read; whenever the two could disagree the hash is rebuilt from disk.
    """

    def __init__(self, dest: Path, url: str, sha256: str | None) -> None:
        self.path = part_file(dest)
        self.meta = sidecar(self.path)
        self.url = url
        self.sha256 = sha256
        self.size = self.path.stat().st_size if self.path.is_file() else 0
        self._hasher: hashlib._Hash | None = None
        self._hashed = -1

    def validator(self) -> _Validator | None:
        """The validator saved with this .part, if it belongs to the same URL and pin."""
        try:
            data = read_json(self.meta)
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("url") != self.url or data.get("sha256") != self.sha256:
            return None
        v = _Validator(data.get("etag"), data.get("last_modified"))
        return v if v.if_range else None

    def save_validator(self, v: _Validator, total: int | None) -> None:
        write_json_atomic(self.meta, {"url": self.url, "sha256": self.sha256, "etag": v.etag,
                                      "last_modified": v.last_modified, "size": total})

    def reset(self) -> None:
        """Truncate to zero bytes (a fresh body follows)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(b"")
        self.size = 0
        self._hasher, self._hashed = hashlib.sha256(), 0

    def drop(self) -> None:
        """Delete the .part and its sidecar."""
        for p in (self.path, self.meta):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        self.size = 0
        self._hasher, self._hashed = None, -1

    @contextlib.contextmanager
    def appending(self) -> Iterator[None]:
        if self._hasher is None or self._hashed != self.size:
            self._rehash()
        with open(self.path, "ab") as self._fp:
            try:
                yield
            finally:
                del self._fp

    def append(self, chunk: bytes) -> None:
        self._fp.write(chunk)
        assert self._hasher is not None
        self._hasher.update(chunk)
        self.size += len(chunk)
        self._hashed = self.size

    def hexdigest(self) -> str:
        if self._hasher is None or self._hashed != self.size:
            self._rehash()
        assert self._hasher is not None
        return self._hasher.hexdigest()

    def _rehash(self) -> None:
        h = hashlib.sha256()
        n = 0
        if self.path.exists():
            with open(self.path, "rb") as fp:
                while chunk := fp.read(CHUNK):
                    h.update(chunk)
                    n += len(chunk)
        self._hasher, self._hashed, self.size = h, n, n


def _reason(exc: BaseException, timeout: float) -> str:
    """A short human reason for a network failure."""
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        inner = exc.reason
        if isinstance(inner, BaseException):
            return _reason(inner, timeout)
        return str(inner)
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"timed out after {timeout:g}s"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror or exc})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error ({exc.reason or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    if isinstance(exc, http.client.HTTPException):
        return f"bad HTTP response ({type(exc).__name__}: {exc})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@dataclass(frozen=True)
class Job:
    url: str
    dest: Path
    sha256: str | None
    size: int | None
    timeout: float
    progress: bool
    where: str          # names the spec in hints


def _supply_hint(job: Job) -> str:
    return (f"check the network and proxy settings (https_proxy), or get the ISO another way and either set "
            f"source.path in {job.where} to it or copy it to {show_path(job.dest)}")


def _request(job: Job, part: _PartFile) -> tuple[http.client.HTTPResponse, int]:
    """Send the request (a resume when the .part can be proven to be the same remote file)."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    validator = part.validator() if part.size else None
    if part.size and validator is None:
        # No validator to prove the remote is unchanged: splicing could go unnoticed, so restart.
        part.drop()
    have = part.size
    if have:
        assert validator is not None and validator.if_range is not None
        headers["Range"] = f"bytes={have}-"
        headers["If-Range"] = validator.if_range
        info(f"resuming {job.url} at byte {have}")
    try:
        resp = urllib.request.urlopen(urllib.request.Request(job.url, headers=headers), timeout=job.timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        status = f"HTTP {exc.code} {exc.reason}"
        if exc.code == 416 and have:
            # Our .part is at or past the end of what the server has now: start over.
            info(f"{job.url}: server answered {status} to a resume at byte {have}; starting over")
            part.drop()
            raise _Retry("restart", status, free=True) from exc
        if exc.code >= 500:
            raise _Retry("status", status) from exc
        raise FetchError(
            f"cannot download {job.url}: the server answered {status}",
            "check source.url (is the release still at that address? upstream moves old ISOs to "
            f"archive-virtio/), or get the ISO another way and set source.path in {job.where} to it "
            f"or copy it to {show_path(job.dest)}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Retry("network", _reason(exc, job.timeout)) from exc
    return resp, have


def _receive(job: Job, part: _PartFile, resp: http.client.HTTPResponse, limit: int | None,
             meter: Progress | None) -> bool:
    """Append the body to the .part; return False when it would grow past ``limit``."""
    start = part.size
    with part.appending():
        while True:
            try:
                # read1: whatever has arrived (up to 1 MiB), so a stall keeps the bytes before it.
                chunk = resp.read1(CHUNK)
            except (OSError, http.client.HTTPException) as exc:
                raise _Retry("short", _reason(exc, job.timeout)) from exc
            if not chunk:
                return True
            if limit is not None and part.size + len(chunk) > limit:
                return False
            part.append(chunk)
            if meter:
                meter(part.size - start)


def _attempt(job: Job, part: _PartFile) -> None:
    """One request: append to (or restart) the .part until the body ends.

    Returns when the body ended where it should; raises :class:`_Retry` for
    anything worth another try and :class:`FetchError` for anything that is not.
    """
    resp, have = _request(job, part)
    with resp:
        total = _start_body(job, part, resp, have)
        expected = total if total is not None else job.size
        meter = Progress(f"download {job.dest.name}" + (f" (from byte {part.size})" if part.size else ""),
                         total=None if expected is None else expected - part.size) if job.progress else None
        # The longest the file may legally get: the server's own total, else the pin.
        limit = min((x for x in (total, job.size) if x is not None), default=None)
        try:
            fits = _receive(job, part, resp, limit, meter)
        finally:
            if meter:
                meter.close()
    if not fits:
        part.drop()  # after the file is closed: Windows cannot delete an open file
        raise FetchError(
            f"{job.url}: the server sent more than {limit} bytes "
            f"({'the pinned source.size' if limit == job.size else 'its declared length'}); "
            "the partial file was deleted",
            "the remote file is not the pinned ISO (probably re-spun upstream): check it, then "
            f"update source.size and source.sha256 in {job.where}")
    if expected is not None and part.size < expected:
        raise _Retry("short", "the connection closed early")


def _start_body(job: Job, part: _PartFile, resp: http.client.HTTPResponse, have: int) -> int | None:
    """Check the status line and headers; position the .part; return the full file size if known."""
    status = resp.status
    length = resp.headers.get("Content-Length")
    try:
        clen = int(length) if length is not None else None
    except ValueError:
        raise _Retry("status", f"bad Content-Length {length!r}") from None
    v = _Validator(resp.headers.get("ETag"), resp.headers.get("Last-Modified"))
    if status == 206 and have:
        m = _CONTENT_RANGE.match((resp.headers.get("Content-Range") or "").strip())
        if not m:
            part.drop()
            raise _Retry("restart", f"206 without a usable Content-Range ({resp.headers.get('Content-Range')!r})")
        first, last = int(m.group(1)), int(m.group(2))
        total = int(m.group(3)) if m.group(3) != "*" else None
        if first != have or last < first or (clen is not None and clen != last - first + 1):
            # The server is not sending what we asked for: these bytes cannot be appended.
            part.drop()
            raise _Retry("restart", f"server sent bytes {first}-{last} (Content-Length {length}) "
                                    f"when asked for bytes {have}-")
        old = part.validator()
        saved_total = _saved_size(part)
        if old and ((v.etag and old.etag and v.etag != old.etag)
                    or (saved_total is not None and total is not None and total != saved_total)):
            # Honoured If-Range, yet describes another file: a broken cache or server in between.
            part.drop()
            raise _Retry("restart", f"server resumed a different file (ETag {v.etag}, {total} bytes)")
        if v.if_range is None and old is not None:
            v = old
    elif status == 200:
        if have:
            # The server ignored Range, or If-Range told it the file changed: the body is the whole file.
            info(f"{job.url}: server sent the whole file, not the rest (changed remote or no Range support); "
                 "starting over")
        part.reset()
        total = clen
    else:
        raise FetchError(f"cannot download {job.url}: unexpected HTTP {status} {resp.reason}",
                         _supply_hint(job))
    if total is not None and job.size is not None and total != job.size:
        part.drop()
        raise FetchError(
            f"{job.url}: the server reports {total} bytes, but source.size pins {job.size}",
            f"the ISO was probably re-spun upstream: check the new file, then update source.size "
            f"and source.sha256 in {job.where}")
    part.save_validator(v, total)
    return total


def run(job: Job, retries: int, backoff: float) -> FetchResult:
    part = _PartFile(job.dest, job.url, job.sha256)
    if job.size is not None and part.size > job.size:
        part.drop()
    if (part.size and job.sha256 and (job.size is None or part.size == job.size)
            and part.hexdigest() == job.sha256):
        # Cut between the last byte and the rename: the .part is already the file.
        info(f"{show_path(part.path)} is complete; no request needed")
    else:
        _transfer(job, part, retries, backoff)
    actual, size = part.hexdigest(), part.size
    if job.sha256 is not None and actual != job.sha256:
        part.drop()
        raise ChecksumMismatch(
            f"{job.url}: downloaded {size} bytes with sha256 {actual}, expected {job.sha256} "
            "(source.sha256); the partial file was deleted",
            "the ISO was probably re-spun upstream (virtio-win republishes under the same URL): "
            f"check the new file, then update source.sha256 in {job.where}")
    check_size(job.url, size, job.size, f"check the download, then update source.size in {job.where}")
    validator = part.validator() or _Validator()
    write_json_atomic(sidecar(job.dest), {
        "url": job.url,
        "sha256": actual,
        "size": size,
        "pinned": job.sha256 is not None,
        "etag": validator.etag,
        "last_modified": validator.last_modified,
        "fetched": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        # The file's mtime as proven (the rename keeps it): a restored copy of the cache is vouched for by it.
        "mtime_ns": part.path.stat().st_mtime_ns,
    })
    os.chmod(part.path, 0o644)
    os.replace(part.path, job.dest)
    with contextlib.suppress(FileNotFoundError):
        part.meta.unlink()
    # The bytes were hashed as they arrived, and the entry lock keeps everyone else out.
    return FetchResult(path=job.dest, sha256=actual, size=size, origin="download", url=job.url,
                       stat=job.dest.stat(), expected=job.sha256)


def _transfer(job: Job, part: _PartFile, retries: int, backoff: float) -> None:
    failures = 0
    free = 0
    while True:
        try:
            _attempt(job, part)
            return
        except _Retry as exc:
            if exc.free and free < 2:
                free += 1
                continue
            if failures >= retries:
                _give_up(job, part, exc, failures + 1)
            delay = min(backoff * 2 ** failures, MAX_BACKOFF)
            failures += 1
            where = f" at byte {part.size} of {_expected_size(part, job)}" if exc.kind == "short" else ""
            warn(f"{job.url}: {exc.reason}{where}; retry {failures} of {retries}"
                 + (f" in {delay:.1f}s" if delay else ""))
            if delay:
                time.sleep(delay)


def _give_up(job: Job, part: _PartFile, exc: _Retry, attempts: int) -> None:
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    if exc.kind == "short":
        expected = _expected_size(part, job)
        kept = (f"run again to resume from {show_path(part.path)}" if part.size and part.validator()
                else "run again")
        raise IncompleteDownload(
            f"{job.url}: download incomplete, received {part.size} of {expected} bytes "
            f"({exc.reason}; {tries})",
            f"{kept}; if it keeps failing, {_supply_hint(job)}") from exc
    if exc.kind == "status":
        raise FetchError(f"cannot download {job.url}: the server answered {exc.reason} ({tries})",
                         f"the server is failing; try again later, or {_supply_hint(job)}") from exc
    raise FetchError(f"cannot download {job.url}: {exc.reason} ({tries})", _supply_hint(job)) from exc


def _saved_size(part: _PartFile) -> int | None:
    """The full size the server declared when the .part was started, if it did."""
    try:
        size = read_json(part.meta).get("size")
    except (OSError, ValueError, AttributeError):
        return None
    return size if isinstance(size, int) else None


def _expected_size(part: _PartFile, job: Job) -> str:
    size = _saved_size(part)
    size = size if size is not None else job.size
    return str(size) if size is not None else "an unknown number of"


def download(url: str, dest: Path, sha256: str | None = None, *, size: int | None = None,
             retries: int = 4, timeout: float = 30.0, backoff: float = 0.5, progress: bool = True) -> FetchResult:
    """Download ``url`` to ``dest``, verified, resuming a ``dest.part`` left by an earlier run.

    Streams 1 MiB chunks into ``<dest>.part``; resumes with ``Range`` + ``If-Range``
    (the ETag or Last-Modified saved in ``<dest>.part.json``); a 200 restarts the
    body, a 416 drops the part and starts over. Connection errors, timeouts, 5xx
    and short bodies are retried ``retries`` times with exponential ``backoff``;
    other 4xx fail at once. The result is checked against ``sha256`` and ``size``
    when given and only then renamed to ``dest``, next to a ``<dest>.json`` sidecar.
    A checksum mismatch deletes the part file. Raises FetchError, ChecksumMismatch
    or IncompleteDownload. ``dest`` must not be written by anyone else meanwhile
    (:func:`obtain_iso` holds a lock for that).
    """
    return run(prepare(url, dest, sha256, size, timeout, progress, "the spec"), retries, backoff)


def prepare(url: str, dest: Path, sha256: str | None, size: int | None, timeout: float, progress: bool,
         where: str) -> Job:
    if urlsplit(url).scheme not in ("http", "https"):
        raise FetchError(f"source.url {url!r} is not an http(s) URL", "use the https:// address of a versioned ISO")
    sha256 = pin_sha256(sha256)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Job(url=url, dest=dest, sha256=sha256, size=size, timeout=timeout, progress=progress, where=where)
