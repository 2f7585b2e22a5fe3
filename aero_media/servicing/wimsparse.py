"""A working copy of a WIM that holds only what wimlib reads, and the serviced WIM spliced from it and the input.

Servicing changes a few files of a multi-gigabyte ``install.wim``: wimlib reads the
header, the blob table, the XML data, the image's metadata resource and the blobs
of the files we extract (hives, the recovery image, ``SetupComplete.cmd``), and
appends what it writes (new blobs, metadata, tables) after the old data, then
rewrites the header. Everything else (gigabytes of file data) it never reads nor
writes. So the working copy is a sparse file of the WIM's size into which only
those ranges are copied, each widened to whole file-system blocks; after the
updates, the serviced WIM is the working copy's data ranges with the input's
bytes in its holes (:func:`splice`), written once, straight into the new ISO.

The layout read here is the WIM format's (Microsoft's "Windows Imaging File
Format (WIM)" paper; wimlib's ``include/wimlib/header.h`` and ``resource.h``):
a 208-byte header with 24-byte resource headers (7-byte stored size, 1 flag
byte, 8-byte offset, 8-byte original size) for the blob table, the XML data,
the boot metadata and the integrity table; a blob table of 50-byte entries
(resource header, part number, reference count, SHA-1). A WIM this cannot
vouch for (split, solid, with an integrity table, a foreign version, tables out
of bounds) gets a whole copy instead: :func:`plan` says why.

Nothing here trusts the WIM: every offset is bounded by the file's size, and a
blob wimlib reads from a hole would fail its SHA-1 check in wimlib (it verifies
every blob and metadata resource it reads), never pass silently.
"""

from __future__ import annotations

import bisect
import errno
import os
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..fsutil import copy_range

MAGIC = b"MSWIM\0\0\0"
HEADER_SIZE = 208
VERSION = 0x10D00
"""The WIM version Windows 7's images carry (solid WIMs, 0xE00, are refused)."""
_RESHDR = struct.Struct("<7sBQQ")
_BLOB = 50
"""Bytes per blob-table entry: a resource header (24), part number (2), reference count (4), SHA-1 (20)."""
HDR_SPANNED = 0x8
"""Header flag of a split WIM (``.swm``)."""
RES_METADATA, RES_SPANNED, RES_SOLID = 0x02, 0x08, 0x10
MAX_BLOB_TABLE = 16 * 1024 * 1024
"""A blob table larger than this is not a Windows 7 image's (one 50-byte entry per distinct file: a DVD's
install.wim holds about 100,000, 5 MB); each entry costs memory here, so a hostile table stays bounded."""


@dataclass(frozen=True)
class Resource:
    """Where a resource lies in the WIM (byte offset and stored size) and its flags."""

    offset: int
    size: int
    flags: int


@dataclass(frozen=True)
class Layout:
    """What of a WIM's structure the working copy needs: the tables, every metadata resource, each blob by SHA-1."""

    size: int
    tables: tuple[Resource, ...]
    """The header, the boot metadata, and everything from the blob table and XML data to the end."""
    metadata: tuple[Resource, ...]
    blobs: dict[bytes, Resource]


def _reshdr(data: bytes, at: int) -> Resource:
    raw_size, flags, offset, _original = _RESHDR.unpack_from(data, at)
    return Resource(offset, int.from_bytes(raw_size, "little"), flags)


def _header(head: bytes, size: int) -> tuple[Resource, Resource, Resource] | str:
    """The blob table, XML data and boot metadata of a header this module can vouch for, or why not."""
    if len(head) < HEADER_SIZE or head[:8] != MAGIC:
        return "not a WIM header"
    hdr_size, version, flags = struct.unpack_from("<III", head, 8)
    part, parts, _images = struct.unpack_from("<HHI", head, 40)
    if hdr_size != HEADER_SIZE or version != VERSION:
        return f"WIM version {version:#x} (header {hdr_size} bytes)"
    if flags & HDR_SPANNED or part != 1 or parts != 1:
        return "a split WIM"
    blob_table, xml, boot, integrity = (_reshdr(head, at) for at in (48, 72, 96, 124))
    if integrity.size:
        return "an integrity table"  # wimlib would rewrite it over data we did not copy
    if any(r.offset + r.size > size or (r.size and r.offset < HEADER_SIZE) for r in (blob_table, xml, boot)):
        return "a table outside the file"
    if blob_table.flags & 0x04 or blob_table.size % _BLOB or blob_table.size > MAX_BLOB_TABLE:
        return "a compressed or malformed blob table"
    return blob_table, xml, boot


def plan(head: bytes, read_table: Callable[[int, int], bytes], size: int) -> Layout | str:
    """The layout of a WIM of ``size`` bytes whose first bytes are ``head``, or why a whole copy is needed.

    ``read_table(offset, length)`` returns the WIM's bytes there (called once, for the blob table).
    """
    found = _header(head, size)
    if isinstance(found, str):
        return found
    blob_table, xml, boot = found
    table = read_table(blob_table.offset, blob_table.size)
    if len(table) != blob_table.size:
        return "a blob table outside the file"
    metadata: list[Resource] = []
    blobs: dict[bytes, Resource] = {}
    for at in range(0, len(table), _BLOB):
        res = _reshdr(table, at)
        (blob_part,) = struct.unpack_from("<H", table, at + 24)
        if res.flags & (RES_SOLID | RES_SPANNED) or blob_part != 1:
            return "solid or split resources"
        if res.offset + res.size > size or (res.size and res.offset < HEADER_SIZE):
            return "a resource outside the file"
        if res.flags & RES_METADATA:
            metadata.append(res)
        else:
            blobs[table[at + 30:at + 50]] = res
    # The blob table and XML, and whatever lies after them: wimlib appends from the end of its tables,
    # not from the end of the file (a WIM whose integrity table was dropped keeps its bytes), so the
    # appended data then lands on copied blocks only.
    tail = min(blob_table.offset, xml.offset) if xml.size else blob_table.offset
    tables = (Resource(0, HEADER_SIZE, 0), *((boot,) if boot.size else ()), Resource(tail, size - tail, 0))
    return Layout(size, tables, tuple(metadata), blobs)


def _blocks(ranges: Iterable[tuple[int, int]], block: int, size: int) -> list[tuple[int, int]]:
    """``(offset, length)`` ranges widened to whole blocks, clipped to ``size``, merged and sorted."""
    spans = sorted((o // block * block, min(-(-(o + n) // block) * block, size)) for o, n in ranges if n > 0)
    merged: list[list[int]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [(lo, hi - lo) for lo, hi in merged]


def data_ranges(fd: int, size: int) -> list[tuple[int, int]] | None:
    """The ranges of ``fd`` that hold data (``SEEK_DATA``/``SEEK_HOLE``), or None where the file system cannot tell."""
    out: list[tuple[int, int]] = []
    at = 0
    try:
        while at < size:
            try:
                lo = os.lseek(fd, at, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no data after ``at``
                    break
                raise
            hi = min(os.lseek(fd, lo, os.SEEK_HOLE), size)
            out.append((lo, hi - lo))
            at = hi
    except (OSError, AttributeError):
        return None
    return out


class SparseWim:
    """A working copy of a WIM stored at ``extents`` of ``source``: only what wimlib reads is copied in."""

    def __init__(self, source: Path, extents: Sequence[tuple[int, int]], dest: Path, layout: Layout) -> None:
        self.source, self.dest, self.layout = source, dest, layout
        self._starts = [0]
        for _offset, length in extents:
            self._starts.append(self._starts[-1] + length)
        self._extents = tuple(extents)
        with open(dest, "wb") as fp:
            fp.truncate(layout.size)
            self.block = max(os.fstat(fp.fileno()).st_blksize, 4096)
        self.copied: list[tuple[int, int]] = []
        self.fetch((r.offset, r.size) for r in (*layout.tables, *layout.metadata))

    def _source_pieces(self, offset: int, length: int) -> list[tuple[int, int]]:
        """``(offset in source, length)`` for WIM bytes ``offset .. offset+length``."""
        out = []
        while length > 0:
            i = bisect.bisect_right(self._starts, offset) - 1
            if i >= len(self._extents):
                raise ValueError(f"byte {offset} is past the WIM's extents")
            inner = offset - self._starts[i]
            n = min(length, self._extents[i][1] - inner)
            out.append((self._extents[i][0] + inner, n))
            offset, length = offset + n, length - n
        return out

    def fetch(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Copy the WIM's bytes in ``ranges`` (widened to whole blocks) into the working copy; the bytes copied."""
        todo = [r for r in _blocks(ranges, self.block, self.layout.size) if not self._covered(*r)]
        moved = 0
        with open(self.source, "rb", buffering=0) as src, open(self.dest, "r+b", buffering=0) as dst:
            for offset, length in todo:
                at = offset
                for src_offset, n in self._source_pieces(offset, length):
                    if copy_range(src.fileno(), dst.fileno(), src_offset, n, at) < n:
                        raise OSError(errno.EIO, f"{self.source.name} ended inside the WIM")
                    at += n
                moved += length
        self.copied = [(o, n) for o, n in _blocks([*self.copied, *todo], self.block, self.layout.size)]
        return moved

    def fetch_blobs(self, sha1s: Iterable[str]) -> int:
        """Copy in the blobs with these SHA-1s (hex; unknown ones are wimlib's to report); the bytes copied."""
        wanted = [self.layout.blobs.get(bytes.fromhex(h)) for h in sha1s if h]
        return self.fetch((r.offset, r.size) for r in wanted if r is not None)

    def _covered(self, offset: int, length: int) -> bool:
        i = bisect.bisect_right([o for o, _ in self.copied], offset) - 1
        return i >= 0 and self.copied[i][0] + self.copied[i][1] >= offset + length

    def holds_only_what_was_copied(self) -> bool:
        """Whether the file system reports exactly the copied ranges as data (else it cannot keep holes)."""
        with open(self.dest, "rb") as fp:
            found = data_ranges(fp.fileno(), self.layout.size)
        return found is not None and _blocks(found, self.block, self.layout.size) == self.copied

    def splice(self) -> list[tuple[Path, int, int]]:
        """The serviced WIM as pieces ``(file, offset, length)``: the working copy's data, the source's bytes between.

        Raises :class:`ValueError` when something wrote into a hole below the old end
        other than in whole copied blocks (its other bytes would be wrong).
        """
        with open(self.dest, "rb") as fp:
            size = os.fstat(fp.fileno()).st_size
            found = data_ranges(fp.fileno(), size)
        if found is None:
            raise ValueError("the file system no longer tells data from holes")
        old_end = self.layout.size
        pieces: list[tuple[Path, int, int]] = []
        at = 0
        for lo, n in found:
            hi = lo + n
            below = (lo, min(hi, old_end) - lo)
            if below[1] > 0 and not self._covered(*_blocks([below], self.block, old_end)[0]):
                raise ValueError(f"bytes {lo}..{hi} were written where nothing was copied")
            if lo > at:
                pieces += [(self.source, o, m) for o, m in self._source_pieces(at, lo - at)]
            pieces.append((self.dest, lo, n))
            at = hi
        if at < size:
            if size > old_end:
                raise ValueError("the WIM grew but its end is a hole")
            pieces += [(self.source, o, m) for o, m in self._source_pieces(at, size - at)]
        return _merge(pieces)


    def fill(self) -> None:
        """Copy the source's bytes into every hole: the working copy becomes the whole serviced WIM."""
        pieces = self.splice()
        with open(self.source, "rb", buffering=0) as src, open(self.dest, "r+b", buffering=0) as dst:
            at = 0
            for file, offset, length in pieces:
                if file == self.source and copy_range(src.fileno(), dst.fileno(), offset, length, at) < length:
                    raise OSError(errno.EIO, f"{self.source.name} ended inside the WIM")
                at += length


def _merge(pieces: list[tuple[Path, int, int]]) -> list[tuple[Path, int, int]]:
    out: list[tuple[Path, int, int]] = []
    for f, o, n in pieces:
        if out and out[-1][0] == f and out[-1][1] + out[-1][2] == o:
            out[-1] = (f, out[-1][1], out[-1][2] + n)
        else:
            out.append((f, o, n))
    return out
