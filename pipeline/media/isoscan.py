"""A small, independent ISO 9660 / Joliet reader for verification.

The media are written with pycdlib; reading them back with pycdlib too would let a
bug that the library both writes and reads consistently go unseen. This reader
shares no code with pycdlib: it walks the volume descriptors and directory
records itself (ECMA-119 §8–9, Joliet's UCS-2 names) and streams file extents
straight from the image.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import VerifyError

SECTOR = 2048
_JOLIET_ESCAPES = (b"%/@", b"%/C", b"%/E")
_FLAG_DIR = 0x02
_FLAG_MULTI_EXTENT = 0x80
_MAX_DEPTH = 32


@dataclass(frozen=True)
class ScannedFile:
    """A file found by walking the directory records."""

    path: str
    extent: int
    size: int


@dataclass(frozen=True)
class Scan:
    """Labels and the Joliet file list of an image."""

    block_size: int
    label: str
    joliet_label: str | None
    files: tuple[ScannedFile, ...]


def _descriptors(fp: BinaryIO, name: str) -> Iterator[bytes]:
    for sector in range(16, 16 + 64):
        fp.seek(sector * SECTOR)
        vd = fp.read(SECTOR)
        if len(vd) < SECTOR or vd[1:6] != b"CD001":
            raise VerifyError(f"{name}: no ISO 9660 volume descriptor at sector {sector}", "rebuild the media")
        if vd[0] == 255:
            return
        yield vd
    raise VerifyError(f"{name}: no volume descriptor terminator", "rebuild the media")


def _records(fp: BinaryIO, extent: int, size: int, block: int, name: str) -> Iterator[bytes]:
    fp.seek(extent * block)
    data = fp.read(size)
    if len(data) < size:
        raise VerifyError(f"{name}: a directory runs past the end of the image", "rebuild the media")
    pos = 0
    while pos < len(data):
        length = data[pos]
        if length == 0:  # records never cross a sector: skip to the next one
            pos = (pos // block + 1) * block
            continue
        if length < 34 or pos + length > len(data):
            raise VerifyError(f"{name}: malformed directory record", "rebuild the media")
        yield data[pos:pos + length]
        pos += length


def _walk(fp: BinaryIO, root: bytes, block: int, joliet: bool, name: str) -> list[ScannedFile]:
    out: list[ScannedFile] = []
    todo = [("", struct.unpack_from("<I", root, 2)[0], struct.unpack_from("<I", root, 10)[0], 0)]
    seen: set[int] = set()
    while todo:
        prefix, extent, size, depth = todo.pop()
        if extent in seen or depth > _MAX_DEPTH:
            raise VerifyError(f"{name}: directory loop or nesting too deep at {prefix or '/'}", "rebuild the media")
        seen.add(extent)
        for rec in _records(fp, extent, size, block, name):
            id_len = rec[32]
            ident = rec[33:33 + id_len]
            if ident in (b"\x00", b"\x01"):
                continue
            text = ident.decode("utf-16-be") if joliet else ident.decode("ascii", "replace")
            text = text.split(";")[0]
            path = f"{prefix}/{text}" if prefix else text
            r_extent, r_size, flags = struct.unpack_from("<I", rec, 2)[0], struct.unpack_from("<I", rec, 10)[0], rec[25]
            if flags & _FLAG_MULTI_EXTENT:
                raise VerifyError(f"{name}: {path} spans several extents, which these media never need",
                                  "rebuild the media")
            if flags & _FLAG_DIR:
                todo.append((path, r_extent, r_size, depth + 1))
            else:
                out.append(ScannedFile(path, r_extent, r_size))
    return sorted(out, key=lambda f: f.path)


def scan_iso(fp: BinaryIO, name: str) -> Scan:
    """Read the labels and walk the Joliet tree (or the primary one when there is no Joliet)."""
    pvd = svd = None
    for vd in _descriptors(fp, name):
        if vd[0] == 1 and pvd is None:
            pvd = vd
        elif vd[0] == 2 and vd[88:91] in _JOLIET_ESCAPES and svd is None:
            svd = vd
    if pvd is None:
        raise VerifyError(f"{name}: no primary volume descriptor", "rebuild the media")
    block = struct.unpack_from("<H", pvd, 128)[0]
    label = pvd[40:72].decode("ascii", "replace").rstrip(" \0")
    joliet_label = svd[40:72].decode("utf-16-be", "replace").rstrip(" \0") if svd is not None else None
    chosen = svd if svd is not None else pvd
    files = _walk(fp, chosen[156:190], block, svd is not None, name)
    return Scan(block, label, joliet_label, tuple(files))


def read_file(fp: BinaryIO, scan: Scan, f: ScannedFile, chunk: int = 1024 * 1024) -> Iterator[bytes]:
    """Stream one file's bytes; a short read is an error, never short data."""
    fp.seek(f.extent * scan.block_size)
    left = f.size
    while left:
        data = fp.read(min(chunk, left))
        if not data:
            raise VerifyError(f"{f.path} ends {left} bytes early: the image is truncated", "rebuild the media")
        left -= len(data)
        yield data


def open_scan(path: Path) -> tuple[BinaryIO, Scan]:
    """Open an image and scan it; the caller closes the file."""
    fp = open(path, "rb")  # noqa: SIM115 (returned open: the caller streams files from it, then closes it)
    try:
        return fp, scan_iso(fp, path.name)
    except BaseException:
        fp.close()
        raise
