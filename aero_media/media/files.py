"""A file on a medium: its path there and where its bytes come from."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MANIFEST_NAME = "manifest.json"
"""The manifest at the root of every medium (Aero's tools read it there)."""


@dataclass(frozen=True)
class FileRegion:
    """Bytes that are a part of a larger file: ``extents`` are (byte offset, length) in ``file``, and the
    bytes are their concatenation, in order (a file inside an ISO image, read without extracting it)."""

    file: Path
    extents: tuple[tuple[int, int], ...]

    @property
    def size(self) -> int:
        return sum(length for _offset, length in self.extents)


class _RegionReader(io.RawIOBase):
    """Stream a :class:`FileRegion`'s extents in order, never more than the caller asks for at once."""

    def __init__(self, region: FileRegion) -> None:
        super().__init__()
        self._fp = open(region.file, "rb")  # noqa: SIM115 (held for the reader's life; close() closes it)
        self._extents = list(region.extents)
        self._at = 0  # the extent being read
        self._done = 0  # bytes of it already read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while self._at < len(self._extents):
            offset, length = self._extents[self._at]
            left = length - self._done
            if left <= 0:
                self._at, self._done = self._at + 1, 0
                continue
            self._fp.seek(offset + self._done)
            want = min(left, len(buffer))
            got = self._fp.readinto(memoryview(buffer)[:want])
            if not got:
                return 0  # the file is shorter than the region says: the caller's size check reports it
            self._done += got
            return got
        return 0

    def close(self) -> None:
        self._fp.close()
        super().close()


@dataclass(frozen=True)
class MediaFile:
    """One file on a medium: its '/'-separated path and its bytes (a file on disk, or in memory)."""

    path: str
    source: Path | None = None
    data: bytes | None = None
    sha256: str | None = None
    """The bytes' sha256 when a manifest already states it (a writer that needs it need not hash again)."""
    region: FileRegion | None = None
    """Where the bytes lie inside a larger file (instead of ``source`` or ``data``)."""

    @property
    def size(self) -> int:
        if self.data is not None:
            return len(self.data)
        if self.region is not None:
            return self.region.size
        assert self.source is not None
        return os.stat(self.source).st_size

    def open(self) -> BinaryIO:
        """Open the bytes for reading."""
        if self.data is not None:
            return io.BytesIO(self.data)
        if self.region is not None:
            return io.BufferedReader(_RegionReader(self.region), 1 << 20)
        assert self.source is not None
        return open(self.source, "rb")
