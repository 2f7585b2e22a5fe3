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

    def pieces(self) -> tuple[tuple[Path, int, int], ...]:
        """The bytes as ``(file, offset, length)`` pieces, in order."""
        return tuple((self.file, offset, length) for offset, length in self.extents)


@dataclass(frozen=True)
class Spliced:
    """Bytes made of pieces of several files, in order: ``(file, byte offset, length)`` each (a serviced WIM:
    what servicing wrote, with the input ISO's bytes between, see :mod:`aero_media.servicing.wimsparse`)."""

    parts: tuple[tuple[Path, int, int], ...]

    @property
    def size(self) -> int:
        return sum(length for _file, _offset, length in self.parts)

    def pieces(self) -> tuple[tuple[Path, int, int], ...]:
        """The bytes as ``(file, offset, length)`` pieces, in order."""
        return self.parts


class _PieceReader(io.RawIOBase):
    """Stream ``(file, offset, length)`` pieces in order, never more than the caller asks for at once."""

    def __init__(self, pieces: tuple[tuple[Path, int, int], ...]) -> None:
        super().__init__()
        self._pieces = list(pieces)
        self._open: dict[Path, BinaryIO] = {}  # closed by close()
        self._at = 0  # the piece being read
        self._done = 0  # bytes of it already read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while self._at < len(self._pieces):
            file, offset, length = self._pieces[self._at]
            left = length - self._done
            if left <= 0:
                self._at, self._done = self._at + 1, 0
                continue
            fp = self._open.get(file)
            if fp is None:
                fp = self._open[file] = open(file, "rb")  # noqa: SIM115 (held for the reader's life)
            fp.seek(offset + self._done)
            want = min(left, len(buffer))
            got = int(fp.readinto(memoryview(buffer)[:want]))  # type: ignore[attr-defined]
            if not got:
                return 0  # the file is shorter than the piece says: the caller's size check reports it
            self._done += got
            return got
        return 0

    def close(self) -> None:
        for fp in self._open.values():
            fp.close()
        self._open.clear()
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
    spliced: Spliced | None = None
    """Pieces of several files that make the bytes (instead of ``source``, ``data`` or ``region``)."""

    @property
    def size(self) -> int:
        if self.data is not None:
            return len(self.data)
        if self.region is not None:
            return self.region.size
        if self.spliced is not None:
            return self.spliced.size
        assert self.source is not None
        return os.stat(self.source).st_size

    def pieces(self) -> tuple[tuple[Path, int, int], ...]:
        """The bytes as ``(file, offset, length)`` pieces of files on disk (empty for bytes held in memory)."""
        if self.region is not None:
            return self.region.pieces()
        if self.spliced is not None:
            return self.spliced.pieces()
        if self.source is not None:
            return ((self.source, 0, self.size),)
        return ()

    def open(self) -> BinaryIO:
        """Open the bytes for reading."""
        if self.data is not None:
            return io.BytesIO(self.data)
        if self.region is not None or self.spliced is not None:
            return io.BufferedReader(_PieceReader(self.pieces()), 1 << 20)
        assert self.source is not None
        return open(self.source, "rb")
