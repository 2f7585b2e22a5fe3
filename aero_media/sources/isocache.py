"""The download cache's layout and the checks every ISO passes: pins, sizes, hashing.

The cache is content-addressed:

- ``<cache>/sha256/<hex>/<name>`` when the spec pins the whole ISO (``source.sha256``);
- ``<cache>/url/<sha256(url)[:16]>/<name>`` when only per-file ``expect`` pins exist.
  A sidecar ``<name>.json`` records url, sha256, size, validators and fetch time;
  a hit re-hashes the file against it.

The sidecar also records the ``mtime_ns`` the file had when its sha256 was proven (by the
download, or by hashing a cache hit). A restored copy of the cache (a CI cache: new inode,
new ctime, same bytes and mtime) is vouched for by that record (:func:`recorded_digest`)
instead of being read again; see docs/design.md, "A restored download cache".
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from ..errors import FetchError
from ..fsutil import read_json, relpath_for_humans, write_json_atomic
from ..hashmemo import HashMemo, proven_hash
from ..log import Progress

_HEX64 = re.compile(r"[0-9a-f]{64}")


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
    digest = pin_sha256(sha256)
    if digest is not None:
        return Path(cache_dir) / "sha256" / digest / _basename(url)
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return Path(cache_dir) / "url" / key / _basename(url)


def pin_sha256(sha256: str | None) -> str | None:
    """Normalise a sha256 pin to lower-case hex; reject anything else."""
    if sha256 is None:
        return None
    digest = sha256.strip().lower()
    if not _HEX64.fullmatch(digest):
        raise FetchError(f"sha256 pin {sha256!r} is not 64 hex digits", "copy the full sha256 (sha256sum output)")
    return digest


def sidecar(path: Path) -> Path:
    """The ``<name>.json`` beside a cache file: what it was fetched from and its digest."""
    return path.with_name(path.name + ".json")


def recorded_digest(dest: Path, url: str, st: os.stat_result) -> str | None:
    """The sha256 the sidecar of cache entry ``dest`` vouches for, when it describes the file ``st`` finds.

    It vouches only when it is a record of ours for this entry: the same URL, a sha256 (the one
    the entry's folder is named after, for a pinned entry), and the size and mtime the file had
    when that sha256 was proven. Callers pass only the cache entry a spec addresses
    (:func:`cache_file_for`), never a file of the user's elsewhere.
    """
    try:
        data = read_json(sidecar(dest))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    digest, size, mtime = data.get("sha256"), data.get("size"), data.get("mtime_ns")
    if (data.get("url") != url or not isinstance(digest, str) or not _HEX64.fullmatch(digest)
            or type(size) is not int or type(mtime) is not int
            or (size, mtime) != (st.st_size, st.st_mtime_ns)):
        return None
    if dest.parent.parent.name == "sha256" and dest.parent.name != digest:
        return None
    return digest


def record_proof(dest: Path, url: str, digest: str, st: os.stat_result, *, pinned: bool) -> None:
    """Write (or bring up to date) the sidecar of cache entry ``dest``: its bytes, as ``st`` finds them, were
    proven to have ``digest``. The download's validators and fetch time are kept."""
    if recorded_digest(dest, url, st) == digest:
        return
    try:
        old = read_json(sidecar(dest))
    except (OSError, ValueError):
        old = {}
    old = old if isinstance(old, dict) else {}
    write_json_atomic(sidecar(dest), {
        "url": url, "sha256": digest, "size": st.st_size, "pinned": pinned,
        "etag": old.get("etag"), "last_modified": old.get("last_modified"), "fetched": old.get("fetched"),
        "mtime_ns": st.st_mtime_ns})


def part_file(path: Path) -> Path:
    """The ``<name>.part`` a download streams into before it is verified."""
    return path.with_name(path.name + ".part")


def show_path(path: Path) -> str:
    """A path a user can act on: relative under the cwd, ``~/...`` under home, else absolute."""
    return relpath_for_humans(path, absolute=True)

# --------------------------------------------------------------------------- hashing and pins


def hash_file(path: Path, label: str, progress: bool,
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


def check_size(what: str, actual: int, size: int | None, hint: str) -> None:
    if size is not None and actual != size:
        raise FetchError(f"{what}: size is {actual} bytes, but source.size pins {size}", hint)
