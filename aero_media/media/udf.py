"""UDF 1.02 descriptors for the ISO writer's bridge (ECMA-167 2nd edition, OSTA UDF 1.02).

Only the encoding lives here; ``isowriter.py`` decides where everything goes. The
writer records what a read-only UDF 1.02 DVD needs and nothing more: the volume
recognition sequence (BEA01, NSR02, TEA01), anchors at sector 256 and at the last
sector, a main and a reserve volume descriptor sequence (primary, implementation use
with the logical volume information, partition, logical volume with one type-1
partition map, unallocated space, terminator), a closed logical volume integrity
descriptor, the file set descriptor, and a File Entry (ICB strategy 4, short_ad
allocation descriptors) per file and folder. Every descriptor tag is version 2 (UDF
1.02, ECMA-167 2nd edition); every timestamp is the epoch in UTC.
"""

from __future__ import annotations

import binascii
import struct
import time

SECTOR = 2048
ANCHOR = 256  # ECMA-167 3/8.4.2.1: the first anchor's fixed place
TAG_VERSION = 2  # ECMA-167 2nd edition (UDF 1.02); 3 is the 3rd edition's (UDF 2.00 on)
UDF_REVISION = 0x0102
MAX_AD = 0x3FFFF800
"""Bytes one allocation descriptor holds: its length has 30 bits, and every descriptor but the last
must cover whole blocks (ECMA-167 4/14.14.1.1), so a file of 1 GiB or more takes several."""
FILE_MODE = 0x1084  # ECMA-167 4/14.9.5: read for others, group and owner
DIR_MODE = 0x14A5  # read and execute (search) for others, group and owner
NOBODY = 0xFFFFFFFF  # uid/gid "not specified": the medium has no owner
IMPLEMENTATION = b"*AERO-VIRTIO-MEDIA"
_PARENT, _DIRECTORY = 0x08, 0x02  # ECMA-167 4/14.4.3 file characteristics

# Tag identifiers, ECMA-167 3/7.2.1 and 4/7.2.1.
PVD, AVDP, IUVD, PD, LVD, USD, TD, LVID = 1, 2, 4, 5, 6, 7, 8, 9
FSD, FID, FE = 256, 257, 261


def tag(ident: int, location: int, body: bytes) -> bytes:
    """A descriptor: its 16-byte tag (checksum, CRC over ``body``) followed by ``body``."""
    # The descriptor CRC is CRC-ITU-T (x^16 + x^12 + x^5 + 1, initial 0): binascii's crc_hqx.
    head = bytearray(struct.pack("<HHBBHHHI", ident, TAG_VERSION, 0, 0, 1, binascii.crc_hqx(body, 0), len(body),
                                 location))
    head[4] = (sum(head) - head[4]) & 0xFF
    return bytes(head) + body


def cs0(text: str) -> bytes:
    """OSTA compressed unicode (UDF 1.02 2.1.1): 8 bits a character when every one fits, else 16."""
    if all(ord(c) < 0x100 for c in text):
        return b"\x08" + text.encode("latin-1")
    return b"\x10" + text.encode("utf-16-be")


def dstring(text: str, size: int) -> bytes:
    """A fixed-size field holding ``text`` (cut to fit) with its length in the last byte (ECMA-167 1/7.2.12)."""
    if not text:
        return b"\0" * size
    while len(cs0(text)) > size - 1:
        text = text[:-1]
    enc = cs0(text)
    return enc.ljust(size - 1, b"\0") + bytes([len(enc)])


def regid(ident: bytes, suffix: bytes = b"") -> bytes:
    """An entity identifier (ECMA-167 1/7.4)."""
    return b"\0" + ident.ljust(23, b"\0") + suffix.ljust(8, b"\0")


_CHARSPEC = b"\0" + b"OSTA Compressed Unicode".ljust(63, b"\0")  # CS0, UDF 1.02 2.1.2
_DOMAIN = regid(b"*OSTA UDF Compliant", struct.pack("<HB", UDF_REVISION, 0))
_LV_INFO = regid(b"*UDF LV Info", struct.pack("<H", UDF_REVISION))
_IMPL = regid(IMPLEMENTATION)


def timestamp(epoch: int) -> bytes:
    """ECMA-167 1/7.3: type 1 (local time) with a zero offset, i.e. UTC."""
    t = time.gmtime(epoch)
    return struct.pack("<HhBBBBBBBB", 0x1000, t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                       0, 0, 0)


def extent_ad(length: int, location: int) -> bytes:
    return struct.pack("<II", length, location)


def long_ad(length: int, block: int) -> bytes:
    return struct.pack("<IIH", length, block, 0) + b"\0" * 6


def _sector(descriptor: bytes) -> bytes:
    return descriptor.ljust(SECTOR, b"\0")


def recognition_sequence() -> bytes:
    """BEA01, NSR02, TEA01 (ECMA-167 2/9.1, 3/9.1): three sectors after the ISO 9660 terminator."""
    return b"".join(_sector(b"\0" + ident + b"\x01") for ident in (b"BEA01", b"NSR02", b"TEA01"))


def anchor(location: int, main: int, reserve: int, length: int) -> bytes:
    """An anchor volume descriptor pointer naming both volume descriptor sequences."""
    return _sector(tag(AVDP, location, extent_ad(length, main) + extent_ad(length, reserve) + b"\0" * 480))


def terminator(location: int) -> bytes:
    return _sector(tag(TD, location, b"\0" * 496))


def volume_descriptors(at: int, label: str, epoch: int, partition: tuple[int, int], integrity: int) -> bytes:
    """One volume descriptor sequence starting at sector ``at``; ``partition`` is (first sector, sectors)."""
    date = timestamp(epoch)
    # UDF 1.02 2.2.2.5: the volume set identifier starts with 16 characters that make it unique; ours are
    # hex digits of the epoch and of the label, so the same inputs give the same identifier.
    volume_set = f"{epoch & 0xFFFFFFFF:08X}{binascii.crc32(label.encode()):08X}{label}"
    pvd = (struct.pack("<II", 0, 0) + dstring(label, 32) + struct.pack("<HHHHII", 1, 1, 2, 2, 1, 1)
           + dstring(volume_set, 128) + _CHARSPEC + _CHARSPEC + extent_ad(0, 0)
           + extent_ad(0, 0) + regid(b"") + date + _IMPL + b"\0" * 64 + struct.pack("<IH", 0, 0) + b"\0" * 22)
    iuvd = (struct.pack("<I", 1) + _LV_INFO + _CHARSPEC + dstring(label, 128) + b"\0" * 36 * 3 + _IMPL
            + b"\0" * 128)
    start, length = partition
    pd = (struct.pack("<IHH", 2, 1, 0) + regid(b"+NSR02") + b"\0" * 128 + struct.pack("<III", 1, start, length)
          + _IMPL + b"\0" * 128 + b"\0" * 156)
    lvd = (struct.pack("<I", 3) + _CHARSPEC + dstring(label, 128) + struct.pack("<I", SECTOR) + _DOMAIN
           + long_ad(SECTOR, 0) + struct.pack("<II", 6, 1) + _IMPL + b"\0" * 128
           + extent_ad(2 * SECTOR, integrity) + struct.pack("<BBHH", 1, 6, 1, 0))
    usd = struct.pack("<II", 4, 0)
    out = b"".join(_sector(tag(ident, at + i, body))
                   for i, (ident, body) in enumerate(((PVD, pvd), (IUVD, iuvd), (PD, pd), (LVD, lvd), (USD, usd))))
    return out + terminator(at + 5)


def integrity_sequence(at: int, epoch: int, next_unique: int, files: int, dirs: int, partition_length: int) -> bytes:
    """A closed logical volume integrity descriptor, then a terminator (two sectors)."""
    header = struct.pack("<Q", next_unique) + b"\0" * 24
    use = _IMPL + struct.pack("<IIHHH", files, dirs, UDF_REVISION, UDF_REVISION, UDF_REVISION)
    body = (timestamp(epoch) + struct.pack("<I", 1) + extent_ad(0, 0) + header
            + struct.pack("<IIII", 1, len(use), 0, partition_length) + use)
    return _sector(tag(LVID, at, body)) + terminator(at + 1)


def file_set(epoch: int, label: str, root: int) -> bytes:
    """The file set descriptor (logical block 0) and its terminator (block 1)."""
    body = (timestamp(epoch) + struct.pack("<HHIIII", 3, 3, 1, 1, 0, 0) + _CHARSPEC + dstring(label, 128)
            + _CHARSPEC + dstring(label, 32) + b"\0" * 64 + long_ad(SECTOR, root) + _DOMAIN + b"\0" * 16
            + b"\0" * 16 + b"\0" * 32)
    return _sector(tag(FSD, 0, body)) + terminator(1)


def allocation(size: int, block: int) -> list[tuple[int, int]]:
    """short_ad (length, block) pairs covering ``size`` bytes stored contiguously from ``block``."""
    out = []
    while size > 0:
        length = min(size, MAX_AD)
        out.append((length, block))
        size -= length
        block += length // SECTOR
    return out


def file_entry(block: int, is_dir: bool, size: int, data: int, unique: int, links: int, epoch: int) -> bytes:
    """A File Entry at logical ``block`` for ``size`` bytes stored from logical block ``data``."""
    date = timestamp(epoch)
    # ICB tag (ECMA-167 4/14.6): strategy 4, one entry, file type 4 (directory) or 5 (file), short_ad.
    icb = struct.pack("<IHHHBB", 0, 4, 0, 1, 0, 4 if is_dir else 5) + b"\0" * 6 + struct.pack("<H", 0)
    ads = b"".join(struct.pack("<II", length, at) for length, at in allocation(size, data))
    body = (icb + struct.pack("<IIIHBBIQQ", NOBODY, NOBODY, DIR_MODE if is_dir else FILE_MODE, links, 0, 0, 0,
                              size, -(-size // SECTOR))
            + date * 3 + struct.pack("<I", 1) + long_ad(0, 0) + _IMPL + struct.pack("<QII", unique, 0, len(ads)) + ads)
    return _sector(tag(FE, block, body))


def identifier_size(name: str | None) -> int:
    """Bytes of the File Identifier Descriptor for ``name`` (None: the parent entry), padded to 4."""
    return -(-(38 + (len(cs0(name)) if name is not None else 0)) // 4) * 4


def directory(block: int, entries: list[tuple[str | None, bool, int]]) -> bytes:
    """A directory's File Identifier Descriptors from logical ``block``: (name or None for the parent,
    is a directory, File Entry block) each, the parent first."""
    out = bytearray()
    for name, is_dir, entry in entries:
        ident = cs0(name) if name is not None else b""
        chars = _DIRECTORY * is_dir | (_PARENT if name is None else 0)
        body = struct.pack("<HBB", 1, chars, len(ident)) + long_ad(SECTOR, entry) + struct.pack("<H", 0) + ident
        body += b"\0" * (-(16 + len(body)) % 4)
        # A descriptor's tag names the block holding its first byte (ECMA-167 4/7.2.1).
        out += tag(FID, block + len(out) // SECTOR, body)
    return bytes(out)
