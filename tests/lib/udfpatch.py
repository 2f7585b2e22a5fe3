"""Patch one UDF structure of an image our writer made (ECMA-167 part 4), re-sealing its descriptor tag.

Tests use it to build hostile UDF inputs whose only fault is the one patched.
"""

from __future__ import annotations

import binascii
import struct
from pathlib import Path

from aero_media.media.files import MediaFile
from aero_media.media.isowriter import write_iso

S = 2048


def retag(b: bytearray, off: int, crc_len: int | None = None) -> None:
    """Recompute the CRC and checksum of the descriptor tag at ``off`` (ECMA-167 3/7.2)."""
    if crc_len is None:
        crc_len = struct.unpack_from("<H", b, off + 10)[0]
    struct.pack_into("<HH", b, off + 8, binascii.crc_hqx(bytes(b[off + 16:off + 16 + crc_len]), 0), crc_len)
    b[off + 4] = 0
    b[off + 4] = sum(b[off:off + 16]) & 0xFF


class Udf:
    """A UDF bridge image in memory, with the offsets of its structures."""

    def __init__(self, tmp_path: Path, files: list[MediaFile]) -> None:
        self.path = tmp_path / "in.iso"
        write_iso(files, self.path, "T", 1_700_000_000, udf=True)
        self.b = bytearray(self.path.read_bytes())
        self.part = next(struct.unpack_from("<I", self.b, s * S + 188)[0] for s in range(32, 48)
                         if struct.unpack_from("<H", self.b, s * S)[0] == 5)  # Partition Descriptor
        self.root = self.part + struct.unpack_from("<I", self.b, self.part * S + 404)[0]

    def ads(self, fe: int) -> int:
        """Byte offset of the first allocation descriptor of the File Entry in image block ``fe``."""
        return fe * S + 176 + struct.unpack_from("<I", self.b, fe * S + 168)[0]

    def fids(self, fe: int) -> dict[bytes, int]:
        """Name -> byte offset of each File Identifier of a folder (the parent's name is b'')."""
        length, block = struct.unpack_from("<II", self.b, self.ads(fe))
        at, end, out = (self.part + block) * S, (self.part + block) * S + length, {}
        while at < end:
            l_fi, l_iu = self.b[at + 19], struct.unpack_from("<H", self.b, at + 36)[0]
            out[bytes(self.b[at + 39 + l_iu:at + 38 + l_iu + l_fi])] = at
            at += (38 + l_fi + l_iu + 3) // 4 * 4
        return out

    def fe_of(self, name: bytes, folder: int | None = None) -> int:
        fid = self.fids(folder or self.root)[name]
        return self.part + struct.unpack_from("<I", self.b, fid + 24)[0]

    def save(self) -> Path:
        self.path.write_bytes(self.b)
        return self.path


def rename(img: Udf, old: bytes, new: bytes) -> None:
    """Give the root's 8-bit name ``old`` the same-length name ``new``."""
    fid = img.fids(img.root)[old]
    l_iu = struct.unpack_from("<H", img.b, fid + 36)[0]
    img.b[fid + 39 + l_iu:fid + 39 + l_iu + len(new)] = new
    retag(img.b, fid)
