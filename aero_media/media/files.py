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
class MediaFile:
    """One file on a medium: its '/'-separated path and its bytes (a file on disk, or in memory)."""

    path: str
    source: Path | None = None
    data: bytes | None = None
    sha256: str | None = None
    """The bytes' sha256 when a manifest already states it (a writer that needs it need not hash again)."""

    @property
    def size(self) -> int:
        if self.data is not None:
            return len(self.data)
        assert self.source is not None
        return os.stat(self.source).st_size

    def open(self) -> BinaryIO:
        """Open the bytes for reading."""
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.source is not None
        return open(self.source, "rb")
