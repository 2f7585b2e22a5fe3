"""Write reproducible zip archives: sorted entries, fixed dates and attributes, streamed data."""

from __future__ import annotations

import shutil
import time
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

from .. import log
from ..fsutil import atomic_path
from .epoch import DEFAULT_EPOCH
from .files import MediaFile

FILE_ATTR = (0o100644 << 16)
DIR_ATTR = (0o040755 << 16) | 0x10  # MS-DOS directory bit too, for Windows Explorer
ZIP64_LIMIT = 0xFFFFFFFF
SAMPLE = 64 * 1024


def zip_time(epoch: int) -> int:
    """The Unix time a zip entry written for ``epoch`` carries (clamped to 1980, rounded down to 2 s)."""
    # The zip format cannot say earlier than 1980 (also the default epoch), and DOS time has 2-second steps.
    t = max(epoch, DEFAULT_EPOCH)
    return t - t % 2


def zip_date(epoch: int) -> tuple[int, int, int, int, int, int]:
    """The zip date-time of ``epoch`` in UTC, clamped to 1980 (zip's first representable year)."""
    t = time.gmtime(zip_time(epoch))
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)


def worth_compressing(f: MediaFile) -> bool:
    """Deflate unless a sample of the data shows it will not shrink (signed binaries often do, random data not).

    The decision depends only on the bytes, so the archive stays reproducible.
    """
    with f.open() as fp:
        sample = fp.read(SAMPLE)
    if len(sample) < 512:
        return True
    return len(zlib.compress(sample, 1)) < 0.97 * len(sample)


def _info(name: str, date: tuple[int, int, int, int, int, int], attr: int, compress: bool) -> zipfile.ZipInfo:
    zi = zipfile.ZipInfo(name, date_time=date)
    zi.create_system = 3  # Unix: external_attr carries the mode
    zi.external_attr = attr
    zi.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    return zi


def write_zip(files: Sequence[MediaFile], out: Path, epoch: int) -> None:
    """Write ``files`` to ``out`` (atomically) with explicit folder entries, in sorted order."""
    date = zip_date(epoch)
    dirs = sorted({"/".join(f.path.split("/")[:i]) + "/" for f in files for i in range(1, f.path.count("/") + 1)})
    progress = log.Progress(f"write {out.name}", sum(f.size for f in files))
    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
        for d in dirs:
            zf.writestr(_info(d, date, DIR_ATTR, False), b"")
        for f in sorted(files, key=lambda f: f.path):
            zi = _info(f.path, date, FILE_ATTR, worth_compressing(f))
            with f.open() as src, zf.open(zi, "w", force_zip64=f.size > ZIP64_LIMIT) as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)
            progress.advance(f.size, files=1)
    progress.close()
