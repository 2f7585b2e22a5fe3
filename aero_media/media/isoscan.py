"""What verification needs from an ISO that pycdlib does not tell: every date, and cut-off files.

pycdlib is the independent reader of the media (our own ``isowriter`` writes them):
:mod:`aero_media.media.verify` lists and hashes files through it. Two things it
cannot be asked for, so this scanner reads them from the raw records itself
(ECMA-119 8-9, Joliet, Rock Ridge 1.09 TF entries):

* every date in the image, exactly as written: the volume descriptors' four dates,
  each directory record's date in both trees, and each Rock Ridge TF time, so that
  a clock leaking into any of them is caught (pycdlib keeps some of these only as
  parsed fields of its private record classes, and never lists them);
* a file whose extent runs past the end of the image: pycdlib shortens such a file
  to what the image holds without saying so, so a truncated medium would hash as
  shorter files rather than fail.
"""

from __future__ import annotations

import calendar
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import VerifyError

SECTOR = 2048
_JOLIET_ESCAPES = (b"%/@", b"%/C", b"%/E")
_FLAG_DIR = 0x02
_MAX_DEPTH = 32


@dataclass(frozen=True)
class Stamp:
    """One date found in the image: where, and when (Unix time; None for "not specified")."""

    where: str
    when: int | None


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


def _record_time(raw: bytes) -> int:
    """A 7-byte directory-record date (ECMA-119 9.1.5) as Unix time."""
    year, month, day, hour, minute, second, offset = (int(x) for x in struct.unpack("<6Bb", raw))
    try:
        base = calendar.timegm((1900 + year, month, day, hour, minute, second))
    except (ValueError, OverflowError):
        return -1  # not a date at all
    return int(base) - offset * 15 * 60


def _volume_time(raw: bytes) -> int | None:
    """A 17-byte volume descriptor date (ECMA-119 8.4.26.1) as Unix time; None when "not specified"."""
    digits = raw[:16]
    if digits == b"0" * 16 and raw[16] in (0, 48):
        return None
    try:
        base = calendar.timegm((int(digits[0:4]), int(digits[4:6]), int(digits[6:8]), int(digits[8:10]),
                                int(digits[10:12]), int(digits[12:14])))
    except (ValueError, OverflowError):
        return -1
    return int(base) - int(struct.unpack("<b", raw[16:17])[0]) * 15 * 60


def _tf_times(su: bytes) -> list[int]:
    """Dates of the Rock Ridge TF entries in a record's System Use area."""
    out: list[int] = []
    pos = 0
    while pos + 4 <= len(su):
        sig, length = su[pos:pos + 2], su[pos + 2]
        if length < 4 or pos + length > len(su):
            break
        if sig == b"TF":
            flags = su[pos + 4]
            size = 17 if flags & 0x80 else 7
            at = pos + 5
            for bit in range(7):
                if flags & (1 << bit) and at + size <= pos + length:
                    raw = su[at:at + size]
                    when = _volume_time(raw) if size == 17 else _record_time(raw)
                    out.append(-1 if when is None else when)
                    at += size
        pos += length
    return out


def _walk(fp: BinaryIO, root: bytes, block: int, image_size: int, joliet: bool, name: str,
          stamps: list[Stamp]) -> None:
    """Collect the dates of every record under ``root``; a file past the end of the image is an error."""
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
            where = f"{'Joliet' if joliet else 'ISO 9660'} record {prefix or '/'}:{ident!r}"
            stamps.append(Stamp(where, _record_time(rec[18:25])))
            if not joliet:
                su = rec[33 + id_len + (1 - id_len % 2):]
                stamps.extend(Stamp(f"Rock Ridge TF of {where}", t) for t in _tf_times(su))
            if ident in (b"\x00", b"\x01"):
                continue
            text = ident.decode("utf-16-be", "replace") if joliet else ident.decode("ascii", "replace")
            path = f"{prefix}/{text.split(';')[0]}" if prefix else text.split(";")[0]
            r_extent, r_size, flags = struct.unpack_from("<I", rec, 2)[0], struct.unpack_from("<I", rec, 10)[0], rec[25]
            if flags & _FLAG_DIR:
                todo.append((path, r_extent, r_size, depth + 1))
            elif r_size and r_extent * block + r_size > image_size:
                short = r_extent * block + r_size - image_size
                raise VerifyError(f"{name}: {path} ends {short} bytes early: the image is truncated",
                                  "rebuild the media")


def scan_dates(fp: BinaryIO, name: str) -> tuple[Stamp, ...]:
    """Every date of the image (volume descriptors, then the Joliet and primary trees' records).

    Raises VerifyError when the structure is not ISO 9660 or a file runs past the end of the image.
    """
    pvd = svd = None
    for vd in _descriptors(fp, name):
        if vd[0] == 1 and pvd is None:
            pvd = vd
        elif vd[0] == 2 and vd[88:91] in _JOLIET_ESCAPES and svd is None:
            svd = vd
    if pvd is None:
        raise VerifyError(f"{name}: no primary volume descriptor", "rebuild the media")
    block = struct.unpack_from("<H", pvd, 128)[0]
    image_size = fp.seek(0, 2)
    stamps: list[Stamp] = []
    for which, desc in (("primary", pvd), ("Joliet", svd)):
        if desc is not None:
            for field, at in (("creation", 813), ("modification", 830), ("expiration", 847), ("effective", 864)):
                stamps.append(Stamp(f"{which} volume {field} date", _volume_time(desc[at:at + 17])))
    if svd is not None:
        _walk(fp, svd[156:190], block, image_size, True, name, stamps)
    _walk(fp, pvd[156:190], block, image_size, False, name, stamps)  # its dates and the Rock Ridge times
    return tuple(stamps)


# What a file that is not an ISO image usually is, by its first bytes.
_NOT_ISO = ((b"PK\x03\x04", "a zip archive"), (b"\x1f\x8b", "a gzip file"), (b"7z\xbc\xaf", "a 7z archive"),
            (b"conectix", "a VHD disk image"), (b"MSWIM", "a WIM image"))


def not_an_iso(path: Path) -> str | None:
    """Why ``path`` is not an ISO 9660 image at all (as opposed to a damaged one), or None."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fp:
            head = fp.read(16)
            fp.seek(16 * SECTOR)
            vd = fp.read(8)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if size == 0:
        return "is empty"
    for magic, what in _NOT_ISO:
        if head.startswith(magic):
            return f"is {what}, not an ISO image"
    if vd[1:6] != b"CD001":
        return f"is not an ISO 9660 image (no volume descriptor at byte {16 * SECTOR})"
    return None


def scan_path(path: Path) -> tuple[Stamp, ...]:
    """:func:`scan_dates` of the image at ``path``."""
    with open(path, "rb") as fp:
        return scan_dates(fp, path.name)
