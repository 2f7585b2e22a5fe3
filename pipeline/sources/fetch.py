"""Fetch stage: obtain the virtio-win ISO, verified, from a local path, the cache or the network.

Upstream publishes no checksums and re-spins ISOs in place under the same URL, so
nothing is trusted until it is hashed: a local file is checked against the pin, a
cached file is re-hashed on every hit, and a download is verified before it gets
its final name. The cache is content-addressed:

- ``<cache>/sha256/<hex>/<name>`` when the spec pins the whole ISO (``source.sha256``);
- ``<cache>/url/<sha256(url)[:16]>/<name>`` when only per-file ``expect`` pins exist.
  A sidecar ``<name>.json`` records url, sha256, size, validators and fetch time;
  a hit re-hashes the file against it.

A download streams into ``<name>.part`` (its validators in ``<name>.part.json``)
beside the final file, so a cut download resumes in the next run: ``Range`` plus
``If-Range`` so a changed remote restarts instead of being spliced onto old bytes.
Only the standard library is used (urllib honours the ``*_proxy`` variables).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from .. import __version__, log
from ..errors import BuildStateError, ChecksumMismatch, FetchError, IncompleteDownload, SourceError
from ..fsutil import CHUNK, read_json, relpath_for_humans, write_json_atomic
from ..hashmemo import MEMO_NAME, HashMemo, proven_hash, stat_key
from ..log import Progress, info, warn
from ..manifests import FetchRecord, ProofRecord, read_manifest
from ..paths import SpecPaths
from ..spec.model import Context, Source, Spec

USER_AGENT = f"aero-virtio-media/{__version__} (python-urllib)"
MAX_BACKOFF = 30.0
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)$")


@dataclass(frozen=True)
class FetchResult:
    """A verified ISO on disk and how it was obtained."""

    path: Path          # the verified ISO on disk (cache file or the local path)
    sha256: str | None  # None: not hashed yet (obtain_iso(defer_hash=True)); ``expected`` says what it must be
    size: int
    origin: str         # "path" | "cache" | "download"
    url: str | None
    stat: os.stat_result | None = field(default=None, compare=False, repr=False)
    """The stat the digest is valid for (None when the file changed while it was hashed)."""
    expected: str | None = None
    """The digest the bytes must have: the whole-ISO pin, or what the download recorded."""


# --------------------------------------------------------------------------- cache layout


def _basename(url: str) -> str:
    """A safe file name from the last URL path segment (no separators, no leading dots)."""
    name = PurePosixPath(unquote(urlsplit(url).path)).name
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", name).lstrip(".")[-120:]
    return name or "download.iso"


def cache_file_for(cache_dir: Path, url: str, sha256: str | None) -> Path:
    """Return where the file for ``url`` lives in the cache.

    With a whole-file pin the entry is addressed by that hash, so a re-spun ISO
    (new pin, same URL) never meets the old bytes; without one it is addressed by
    the URL and carries a ``.json`` sidecar that a cache hit re-verifies against.
    """
    digest = _pin(sha256)
    if digest is not None:
        return Path(cache_dir) / "sha256" / digest / _basename(url)
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return Path(cache_dir) / "url" / key / _basename(url)


def _pin(sha256: str | None) -> str | None:
    """Normalise a sha256 pin to lower-case hex; reject anything else."""
    if sha256 is None:
        return None
    digest = sha256.strip().lower()
    if not _HEX64.fullmatch(digest):
        raise FetchError(f"sha256 pin {sha256!r} is not 64 hex digits", "copy the full sha256 (sha256sum output)")
    return digest


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _part(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def _show_path(path: Path) -> str:
    """A path a user can act on: relative under the cwd, ``~/...`` under home, else absolute."""
    return relpath_for_humans(path, absolute=True)


# --------------------------------------------------------------------------- hashing and pins


def _hash(path: Path, label: str, progress: bool,
          memo: HashMemo | None = None) -> tuple[str, int, os.stat_result | None]:
    """Stream-hash ``path`` with a progress line (an ISO is hundreds of MiB), unless ``memo`` knows it."""
    if memo is not None:
        st = path.stat()
        known = memo.lookup(path, st)
        if known is not None:
            return known, st.st_size, st
    meter = Progress(label, total=path.stat().st_size) if progress else None
    try:
        return proven_hash(path, meter.advance if meter else None)
    finally:
        if meter:
            meter.close()


def _check_size(what: str, actual: int, size: int | None, hint: str) -> None:
    if size is not None and actual != size:
        raise FetchError(f"{what}: size is {actual} bytes, but source.size pins {size}", hint)


# --------------------------------------------------------------------------- download


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
        self.path = _part(dest)
        self.meta = _sidecar(self.path)
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
class _Job:
    url: str
    dest: Path
    sha256: str | None
    size: int | None
    timeout: float
    progress: bool
    where: str          # names the spec in hints


def _supply_hint(job: _Job) -> str:
    return (f"check the network and proxy settings (https_proxy), or get the ISO another way and either set "
            f"source.path in {job.where} to it or copy it to {_show_path(job.dest)}")


def _request(job: _Job, part: _PartFile) -> tuple[http.client.HTTPResponse, int]:
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
            f"or copy it to {_show_path(job.dest)}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Retry("network", _reason(exc, job.timeout)) from exc
    return resp, have


def _receive(job: _Job, part: _PartFile, resp: http.client.HTTPResponse, limit: int | None,
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


def _attempt(job: _Job, part: _PartFile) -> None:
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


def _start_body(job: _Job, part: _PartFile, resp: http.client.HTTPResponse, have: int) -> int | None:
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


def _download(job: _Job, retries: int, backoff: float) -> FetchResult:
    part = _PartFile(job.dest, job.url, job.sha256)
    if job.size is not None and part.size > job.size:
        part.drop()
    if (part.size and job.sha256 and (job.size is None or part.size == job.size)
            and part.hexdigest() == job.sha256):
        # Cut between the last byte and the rename: the .part is already the file.
        info(f"{_show_path(part.path)} is complete; no request needed")
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
    _check_size(job.url, size, job.size, f"check the download, then update source.size in {job.where}")
    validator = part.validator() or _Validator()
    write_json_atomic(_sidecar(job.dest), {
        "url": job.url,
        "sha256": actual,
        "size": size,
        "pinned": job.sha256 is not None,
        "etag": validator.etag,
        "last_modified": validator.last_modified,
        "fetched": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    })
    os.chmod(part.path, 0o644)
    os.replace(part.path, job.dest)
    with contextlib.suppress(FileNotFoundError):
        part.meta.unlink()
    # The bytes were hashed as they arrived, and the entry lock keeps everyone else out.
    return FetchResult(path=job.dest, sha256=actual, size=size, origin="download", url=job.url,
                       stat=job.dest.stat(), expected=job.sha256)


def _transfer(job: _Job, part: _PartFile, retries: int, backoff: float) -> None:
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


def _give_up(job: _Job, part: _PartFile, exc: _Retry, attempts: int) -> None:
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    if exc.kind == "short":
        expected = _expected_size(part, job)
        kept = (f"run again to resume from {_show_path(part.path)}" if part.size and part.validator()
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


def _expected_size(part: _PartFile, job: _Job) -> str:
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
    return _download(_job(url, dest, sha256, size, timeout, progress, "the spec"), retries, backoff)


def _job(url: str, dest: Path, sha256: str | None, size: int | None, timeout: float, progress: bool,
         where: str) -> _Job:
    if urlsplit(url).scheme not in ("http", "https"):
        raise FetchError(f"source.url {url!r} is not an http(s) URL", "use the https:// address of a versioned ISO")
    sha256 = _pin(sha256)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return _Job(url=url, dest=dest, sha256=sha256, size=size, timeout=timeout, progress=progress, where=where)


# --------------------------------------------------------------------------- cache and sources


LOCKS_DIR = ".locks"


@contextlib.contextmanager
def _entry_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on a cache entry so parallel builds (of any checkout) do not share a .part.

    ``filelock`` locks on Windows too. Its files live in ``<cache>/.locks/``, not in the
    entry, so an entry holds only what was downloaded.
    """
    from filelock import FileLock, Timeout

    locks = directory.parent.parent / LOCKS_DIR
    locks.mkdir(parents=True, exist_ok=True)
    lock = FileLock(locks / f"{directory.parent.name}-{directory.name}.lock", thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        info(f"waiting for another process fetching into {_show_path(directory)}")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _cache_hit(dest: Path, url: str, sha256: str | None, size: int | None, progress: bool,
               memo: HashMemo | None, defer: bool) -> FetchResult | None:
    """Re-verify a cached file; delete it and return None when it is damaged.

    With ``defer`` a file the memo does not know is not hashed here: the result
    says what its digest must be, and the prove stage checks it.
    """
    if not dest.is_file():
        return None
    sidecar = _sidecar(dest)
    recorded: dict[str, object] | None = None
    if sha256 is None:
        try:
            data = read_json(sidecar)
            recorded = data if isinstance(data, dict) else {}
        except FileNotFoundError:
            recorded = None  # placed by hand, as the offline hint suggests: adopt it below
        except (OSError, ValueError):
            recorded = {}
        if recorded is not None and (recorded.get("url") != url or not isinstance(recorded.get("sha256"), str)):
            warn(f"{_show_path(sidecar)} does not describe {url}; downloading again")
            _discard(dest)
            return None
    if size is not None and dest.stat().st_size != size:
        warn(f"cached {_show_path(dest)} has {dest.stat().st_size} bytes, source.size pins {size}; downloading again")
        _discard(dest)
        return None
    want = sha256 if sha256 is not None else (recorded or {}).get("sha256")
    known = memo.lookup(dest, dest.stat()) if memo is not None else None
    if defer and known is None and isinstance(want, str):
        return FetchResult(path=dest, sha256=None, size=dest.stat().st_size, origin="cache", url=url,
                           stat=dest.stat(), expected=want)
    actual, n, st = _hash(dest, f"verify {dest.name}", progress, memo)
    if want is not None and actual != want:
        warn(f"cached {_show_path(dest)} is damaged (sha256 {actual}, expected {want}); downloading again")
        _discard(dest)
        return None
    if sha256 is None and recorded is None:
        info(f"using {_show_path(dest)} (placed in the cache by hand; not pinned by sha256, payload pins apply)")
        write_json_atomic(sidecar, {"url": url, "sha256": actual, "size": n, "pinned": False, "etag": None,
                                    "last_modified": None, "fetched": None})
    return FetchResult(path=dest, sha256=actual, size=n, origin="cache", url=url, stat=st,
                       expected=want if isinstance(want, str) else None)


def _discard(dest: Path) -> None:
    for p in (dest, _sidecar(dest)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _use_local(source: Source, path: Path, progress: bool, where: str, memo: HashMemo | None,
               defer: bool) -> FetchResult:
    shown = source.path_raw or _show_path(path)

    def fix(pin: str) -> str:
        return (f"point source.path in {where} at the pinned ISO; if this file is the one you want "
                f"(upstream re-spins ISOs in place), check it, then update {pin} in {where}")

    _check_size(f"source.path {shown}", path.stat().st_size, source.size, fix("source.size"))
    want = _pin(source.sha256)
    st = path.stat()
    if defer and (memo is None or memo.lookup(path, st) is None):
        return FetchResult(path=path, sha256=None, size=st.st_size, origin="path", url=source.url, stat=st,
                           expected=want)
    actual, n, st2 = _hash(path, f"hash {path.name}", progress, memo)
    if want is not None and actual != want:
        raise ChecksumMismatch(f"source.path {shown}: sha256 is {actual}, but source.sha256 pins {want}",
                               fix("source.sha256"))
    return FetchResult(path=path, sha256=actual, size=n, origin="path", url=source.url, stat=st2, expected=want)


def obtain_iso(source: Source, cache_dir: Path, *, spec_display: str | None = None, retries: int = 4,
               timeout: float = 30.0, backoff: float = 0.5, progress: bool = True,
               memo: HashMemo | None = None, defer_hash: bool = False) -> FetchResult:
    """Return the source ISO, verified: from ``source.path``, the cache, or a download.

    1. ``source.path`` names an existing file: hash it (streamed) and check it
       against ``source.sha256``/``source.size`` when given; no network.
    2. The cache holds the file: re-hash it against the pin (or its sidecar); no network.
    3. ``source.url`` is set: :func:`download` into the cache.
    4. Otherwise raise :class:`FetchError` naming the missing path and the fix.

    ``spec_display`` names the spec in hints (e.g. ``specs/win7.yaml``); ``memo``
    spares re-hashing a file whose stat it knows; ``defer_hash`` returns a local or
    cached file unhashed (``sha256`` None, ``expected`` what it must be) for the
    caller to prove; the other keywords are passed to :func:`download`.
    """
    where = spec_display or "the spec"
    if source.path is not None:
        path = Path(source.path)
        shown = source.path_raw or _show_path(path)
        if path.is_file():
            return _use_local(source, path, progress, where, memo, defer_hash)
        if path.exists():
            raise FetchError(f"source.path {shown} ({_show_path(path)}) is not a file",
                             f"point source.path in {where} at the virtio-win ISO file")
        if not source.url:
            raise FetchError(f"source.path {shown}: no such file ({_show_path(path)})",
                             f"put the ISO there or correct source.path in {where}, or add source.url "
                             "and source.sha256 to download it")
        warn(f"source.path {shown} does not exist; using source.url")
    if not source.url:
        raise FetchError("the source names neither a path nor a url",
                         f"set source.path or source.url (with source.sha256) in {where}")
    if source.sha256 is None and not source.expect:
        raise FetchError(f"source.url {source.url} is not pinned",
                         f"add source.sha256 (whole ISO) and/or source.expect (per-file sha256) in {where}")
    sha = _pin(source.sha256)
    dest = cache_file_for(cache_dir, source.url, sha)
    job = _job(source.url, dest, sha, source.size, timeout, progress, where)
    with _entry_lock(dest.parent):
        hit = _cache_hit(dest, source.url, sha, source.size, progress, memo, defer_hash)
        if hit is not None:
            return hit
        info(f"downloading {source.url} to {_show_path(dest)}")
        return _download(job, retries, backoff)


# --------------------------------------------------------------------------- the fetch stage


def iso_input(spec: Spec, ctx: Context) -> Path:
    """The ISO file extraction reads: the local ``path`` when present, else the cache entry."""
    src = spec.source
    if src.path is not None and (src.path.exists() or src.url is None):
        return src.path
    assert src.url is not None
    return cache_file_for(ctx.cache_dir(spec), src.url, src.sha256)


def fetch_stage(spec: Spec, ctx: Context) -> FetchRecord:
    """Locate or download the spec's ISO, record it, and start proving its bytes.

    A download is hashed as it arrives. A local or cached file the hash memo does
    not know is hashed in the background (:func:`start_proof`) while extraction and
    staging run; the prove stage waits for it before anything is published.
    """
    memo = HashMemo(ctx.build_dir / MEMO_NAME)
    res = obtain_iso(spec.source, ctx.cache_dir(spec), spec_display=spec.display, memo=memo, defer_hash=True)
    if res.sha256 is not None and res.stat is not None:
        memo.record(res.path, res.stat, res.sha256)
    elif res.sha256 is None:
        start_proof(res.path, memo)
    # Identity only while the digest is pending: a re-download of the same bytes then
    # writes the same record, and nothing downstream reruns.
    identity = file_identity(res.stat or res.path.stat()) if res.sha256 is None else ()
    record = FetchRecord(path=relpath_for_humans(res.path, ctx.root), size=res.size, stat=identity,
                         origin=res.origin, url=res.url, sha256=res.sha256, expected=res.expected)
    write_json_atomic(SpecPaths(spec, ctx).fetch_record, record.to_json())
    state = f"sha256 {res.sha256}" if res.sha256 else "proving its sha256 in the background"
    log.info(f"{spec.name}: ISO ready ({res.origin}), {state}")
    return record


def file_identity(st: os.stat_result) -> tuple[int, ...]:
    """Size, mtime, inode and ctime: a file whose identity is unchanged has not been rewritten."""
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def still_current(spec: Spec, ctx: Context) -> bool:
    """Whether the fetch record still describes the ISO on disk, judged without reading it."""
    paths = SpecPaths(spec, ctx)
    iso = iso_input(spec, ctx)
    try:
        fetched = read_manifest(paths.fetch_record, FetchRecord.from_json)
        st = iso.stat()
    except (OSError, BuildStateError):
        return False
    if fetched.sha256 is None:
        return file_identity(st) == fetched.stat
    return HashMemo(ctx.build_dir / MEMO_NAME).lookup(iso, st) == fetched.sha256


def check_unchanged(iso: Path, fetched: FetchRecord, memo: HashMemo) -> None:
    """Refuse an ISO that is not the file fetch located or proved (rewritten, or replaced, since)."""
    if fetched.sha256 is None:
        if file_identity(iso.stat()) != fetched.stat:
            raise SourceError(f"{fetched.path}: changed after it was fetched (size, times or inode differ)",
                              "run doit again: the ISO is located and proven anew")
        return
    digest, _size = proof_of(iso, memo)
    if digest != fetched.sha256:
        raise ChecksumMismatch(f"{fetched.path}: sha256 {digest} differs from {fetched.sha256}, which fetch "
                               "proved; the file changed after it was checked",
                               f"delete {fetched.path} and run doit again (it is downloaded or checked anew)")


class _BackgroundHash:
    """The sha256 of one file, computed in a thread; hashlib releases the GIL, so other work goes on."""

    def __init__(self, path: Path, memo: HashMemo) -> None:
        self.path = path
        self._memo = memo
        self._result: tuple[str, int, os.stat_result | None] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"sha256 {path.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = proven_hash(self.path)
            digest, _size, st = self._result
            if st is not None:
                self._memo.record(self.path, st, digest)
        except BaseException as exc:
            self._error = exc

    def result(self) -> tuple[str, int, os.stat_result | None]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


_PENDING: dict[str, _BackgroundHash] = {}
_PENDING_LOCK = threading.Lock()


def start_proof(path: Path, memo: HashMemo) -> None:
    """Start hashing ``path`` in the background (once per version of the file, per process)."""
    key = stat_key(path, path.stat())
    with _PENDING_LOCK:
        if key not in _PENDING:
            _PENDING[key] = _BackgroundHash(path, memo)


def proof_of(path: Path, memo: HashMemo, progress: bool = True) -> tuple[str, int]:
    """The sha256 and size of ``path``: from the memo, a background hash in this process, or hashed now."""
    st = path.stat()
    known = memo.lookup(path, st)
    if known is not None:
        return known, st.st_size
    with _PENDING_LOCK:
        pending = _PENDING.pop(stat_key(path, st), None)
    if pending is not None:
        digest, size, _st = pending.result()
        return digest, size
    digest, size, valid = _hash(path, f"hash {path.name}", progress)
    if valid is not None:
        memo.record(path, valid, digest)
    return digest, size


def prove_stage(spec: Spec, ctx: Context) -> ProofRecord:
    """Wait for (or compute) the ISO's sha256, check it against its pin, and record the proof."""
    paths = SpecPaths(spec, ctx)
    paths.proof_record.unlink(missing_ok=True)
    fetched = read_manifest(paths.fetch_record, FetchRecord.from_json)
    iso = iso_input(spec, ctx)
    memo = HashMemo(ctx.build_dir / MEMO_NAME)
    check_unchanged(iso, fetched, memo)
    digest, size = proof_of(iso, memo)
    if fetched.expected is not None and digest != fetched.expected:
        if fetched.origin == "cache":
            # Bit rot, or a file swapped into the cache: never trust it again.
            _discard(iso)
            raise ChecksumMismatch(f"cached {fetched.path} is damaged (sha256 {digest}, expected "
                                   f"{fetched.expected}); it was deleted", "run doit again: it is downloaded anew")
        raise ChecksumMismatch(f"source.path {spec.source.path_raw or fetched.path}: sha256 is {digest}, but "
                               f"source.sha256 pins {fetched.expected}",
                               f"point source.path in {spec.display} at the pinned ISO; if this file is the one you "
                               f"want (upstream re-spins ISOs in place), check it, then update source.sha256")
    proof = ProofRecord(sha256=digest, size=size)
    write_json_atomic(paths.proof_record, proof.to_json())
    log.info(f"{spec.name}: ISO proven, sha256 {digest}")
    return proof
